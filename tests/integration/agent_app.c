//  agent_app - a program that uses the agent library (brigade_agent): it
//  starts the HTTP client actor and reads its counters. Built by
//  tests/integration/install.sh against an installed Brigade.
#include <brigade.h>
#include <stdio.h>

int
main(void)
{
    brg_system_t *sys = brg_system_new(NULL);
    if (!sys)
        return 1;
    brg_http_opts_t opts;
    brg_http_opts_init(&opts);
    brg_ref_t http;
    brg_http_stats_t stats = {0};
    int rc = brg_http_spawn_root(sys, &opts, &http);
    if (rc == BRG_OK)
        rc = brg_http_stats(sys, http, 5000, &stats);
    brg_system_destroy(&sys);
    printf("agent_app: %s\n", brg_strerror(rc));
    return rc == BRG_OK ? 0 : 1;
}
