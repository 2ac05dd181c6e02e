//  launch_config - brigade-node's settings: read from a JSON config file
//  (docs/DEPLOYMENT.md, "Config file reference"), checked strictly, then
//  overridden by the command line.
#ifndef BRG_BRIGADE_NODE_LAUNCH_CONFIG_H
#define BRG_BRIGADE_NODE_LAUNCH_CONFIG_H

#include <brigade.h>
#include <brigade/node.h>
#include <brigade/supervisor.h>
#include <jansson.h>
#include <stddef.h>

#define BRG__LAUNCH_SEEDS_MAX 64           // seeds dialed at start
#define BRG__LAUNCH_EXPORTS_MAX 64         // names exported to clients
#define BRG__LAUNCH_KEYS_MAX 256           // keys allowed in the file
#define BRG__LAUNCH_PLUGINS_MAX 16         // plugins loaded at start
#define BRG__LAUNCH_DEPTH_MAX 8            // supervisors nested at most this deep
#define BRG__LAUNCH_CHILDREN_MAX 4096      // children in the whole tree
#define BRG__LAUNCH_FILE_MAX (1024 * 1024) // largest config file, in bytes

//  A key the file allows (applied with brg_node_allow_key at start).
typedef struct brg__launch_key {
    const char *name;
    const char *key;
    brg_key_role_t role;
} brg__launch_key_t;

//  A child whose kind is not built in: a plugin must register it at start.
typedef struct brg__launch_plugin_kind {
    const char *name; // the kind
    const char *path; // the JSON path of the child's "kind", for errors
} brg__launch_plugin_kind_t;

//  Everything brigade-node starts from. Strings point into the parsed
//  document or into argv; both live until brg__launch_fini.
typedef struct brg__launch {
    brg_config_t cfg;       // workers, log level (brigade-node's default: info)
    brg_node_config_t ncfg; // name, cluster, listen, advertise, key_dir, timers;
                            // connect stays empty: seeds are dialed after the keys
    const char *seeds[BRG__LAUNCH_SEEDS_MAX];
    int n_seeds;
    const char *exports[BRG__LAUNCH_EXPORTS_MAX];
    int n_exports;
    brg__launch_key_t keys[BRG__LAUNCH_KEYS_MAX];
    int n_keys;
    const char *plugins[BRG__LAUNCH_PLUGINS_MAX]; // shared libraries loaded at start
    int n_plugins;
    brg__launch_plugin_kind_t *plugin_kinds; // children naming a kind not built in
    int n_plugin_kinds;
    const char *ready_file;        // or NULL
    brg_supervisor_opts_t *tree;   // the root supervisor, or NULL (no "supervision")
    int n_supervisors, n_children; // in the whole tree
    const char *path;              // the config file, or NULL
    json_t *doc;                   // the parsed file
    void **blocks;                 // memory the tree owns (specs, opts, child args)
    size_t n_blocks, cap_blocks;
    brg_msg_t **msgs; // the kind children's args messages
    size_t n_msgs, cap_msgs;
} brg__launch_t;

//  Defaults: as brg_config_init and brg_node_config_init, log level info.
void brg__launch_init(brg__launch_t *self);

//  Read and check the config file at path into self. On any problem it
//  prints "brigade-node: PATH: $.json.path: what is wrong" to stderr and
//  returns BRG_EINVAL (a bad file) or BRG_ESYS (cannot read it); self is then
//  only good for brg__launch_fini.
int brg__launch_load(brg__launch_t *self, const char *path);

//  "error", "warning", "notice", "info", "debug" or "off" to a log level
//  (off: -1). False for anything else.
bool brg__launch_log_level(const char *text, int *level);

//  Free everything self owns (safe after a failed load, and twice).
void brg__launch_fini(brg__launch_t *self);

#endif
