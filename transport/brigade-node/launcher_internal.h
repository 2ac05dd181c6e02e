//  launcher_internal - brigade-node's private umbrella: system headers and
//  the modules of this folder.
#ifndef BRG_BRIGADE_NODE_LAUNCHER_INTERNAL_H
#define BRG_BRIGADE_NODE_LAUNCHER_INTERNAL_H

#include <brigade.h>
#include <brigade/node.h>
#include <brigade/supervisor.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kinds.h"
#include "launch_config.h"
#include "notify.h"

#endif
