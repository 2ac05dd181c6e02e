//  runtime_internal - the private umbrella of runtime/: system headers and
//  the folder's module headers, in one place (house rule R9/R11).
#ifndef BRG_RUNTIME_INTERNAL_H
#define BRG_RUNTIME_INTERNAL_H

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  The runtime's own public headers only: the actors library (gather,
//  router, supervisor, http, ...) and the transport build on the runtime,
//  never the other way round.
#include "brigade/actor.h"
#include "brigade/error.h"
#include "brigade/export.h"
#include "brigade/link.h"
#include "brigade/log.h"
#include "brigade/msg.h"
#include "brigade/ref.h"
#include "brigade/registry.h"
#include "brigade/system.h"
#include "brigade/timer.h"
#include "brigade/trace.h"
#include "brigade/version.h"

#include "actor.h"
#include "backpressure.h"
#include "debug.h"
#include "link.h"
#include "log.h"
#include "mailbox.h"
#include "msg.h"
#include "park.h"
#include "pool.h"
#include "reclaim.h"
#include "registry.h"
#include "remote.h"
#include "runq.h"
#include "sched.h"
#include "slots.h"
#include "system.h"
#include "timer.h"
#include "tracing.h"
#include "watchdog.h"
#include "worker.h"

#endif
