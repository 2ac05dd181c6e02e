//  actors_internal - the private umbrella of actors/: the public API and the
//  system headers the folder's sources use. actors/ is built on the public
//  API only; it never includes runtime/ headers.
#ifndef BRG_ACTORS_ACTORS_INTERNAL_H
#define BRG_ACTORS_ACTORS_INTERNAL_H

#include <brigade.h>

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#endif
