//  keys - CURVE keys of a node: Z85, certificate files, the key directory
//  and the allow-list (internal; no ZeroMQ here, so all of it is unit-tested
//  and fuzzed without sockets).
//
//  Certificate files are CZMQ's zcert format (ZPL text, rfc.zeromq.org
//  spec 4), so CZMQ's zcert/zcertstore and other ZeroMQ tools read ours and
//  we read theirs:
//
//      #   ZeroMQ CURVE Public Certificate
//      metadata
//          name = "node-a"
//          role = "node"
//      curve
//          public-key = "<40 characters of Z85>"
//
//  The secret half is the same file with "_secret" appended to its name,
//  mode 0600, with `secret-key` next to `public-key`. `role` is Brigade's
//  own metadata ("node" or "client"); a certificate without one is a
//  client's (least privilege).
//
//  The key directory of a node (docs/PROTOCOL.md section 22):
//      <dir>/            0700, created on first start
//      <dir>/node.key    this node's public certificate
//      <dir>/node.key_secret   its secret certificate, 0600, never logged
//      <dir>/allowed/    public certificates of the keys let in
//
//  Threads. The z85 and cert functions are pure (cert_load and save touch
//  only their files). A brg__keys_t may be used from any thread: one mutex
//  guards it, held only inside its calls.
#ifndef BRG_TRANSPORT_KEYS_H
#define BRG_TRANSPORT_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "brigade/node.h"

#define BRG__KEY_BYTES 32
#define BRG__KEY_Z85 40 // characters of a key in Z85, without the terminating zero

//  Z85 (rfc.zeromq.org spec 32). encode: size a multiple of 4; out holds
//  size * 5 / 4 + 1 bytes (zero-terminated). decode: len a multiple of 5,
//  every character of the alphabet; out holds len * 4 / 5 bytes. BRG_OK or
//  BRG_EINVAL.
int brg__z85_encode(char *out, const uint8_t *data, size_t size);
int brg__z85_decode(uint8_t *out, const char *text, size_t len);

//  A key given as text: 40 characters of Z85. BRG_OK or BRG_EINVAL.
int brg__key_from_text(uint8_t key[BRG__KEY_BYTES], const char *text);

typedef struct brg__cert {
    uint8_t pub[BRG__KEY_BYTES];
    uint8_t sec[BRG__KEY_BYTES];
    bool has_sec;
    char name[BRG_NODE_NAME_MAX + 1]; // metadata name ("" if none)
    brg_key_role_t role;              // metadata role (client if none)
} brg__cert_t;

//  A role's metadata text: "node", "client" or "admin".
const char *brg__key_role_name(brg_key_role_t role);

//  Parse a certificate's text. why: a static reason on BRG_EINVAL (a line
//  that is not ZPL, a key that is not 40 characters of Z85, no public key,
//  a secret key whose public key does not match is not checked here).
int brg__cert_parse(const char *text, size_t len, brg__cert_t *cert, const char **why);

//  Read one certificate file (at most 64 KiB). BRG_OK, BRG_ENOTFOUND (no
//  such file), BRG_ESYS (cannot read), BRG_EINVAL (why says).
int brg__cert_load(const char *path, brg__cert_t *cert, const char **why);

//  Write cert's public certificate to path (mode 0644) and, with has_sec,
//  the secret one to path + "_secret" (0600, created that way: it is never
//  readable by others, not even for a moment). Each file is written whole
//  to a temporary name and renamed. BRG_OK or BRG_ESYS.
int brg__cert_save(const char *path, const brg__cert_t *cert);

//  Generates a key pair (zmq_curve_keypair in production).
typedef int (*brg__keygen_fn)(uint8_t pub[BRG__KEY_BYTES], uint8_t sec[BRG__KEY_BYTES]);

//  This node's key pair from dir, made on first use: creates dir (0700) if
//  it is missing, loads node.key_secret or, when there is none, generates a
//  pair with gen and saves it (name and role node in its metadata). Refuses
//  (BRG_EINVAL, why) a secret file that others may read (mode & 077), or
//  one that does not parse. why is a buffer for a message naming the file.
int brg__keydir_open(const char *dir, const char *name, brg__keygen_fn gen, brg__cert_t *cert,
                     char *why, size_t why_len);

//  The allow-list.
typedef struct brg__key_entry {
    uint8_t pub[BRG__KEY_BYTES];
    char name[BRG_NODE_NAME_MAX + 1];
    brg_key_role_t role;
    bool from_dir; // loaded from <dir>/allowed (a reload may remove it)
} brg__key_entry_t;

typedef struct brg__keys brg__keys_t;

brg__keys_t *brg__keys_new(void);
void brg__keys_free(brg__keys_t **self_p);

//  Let a key in (or change the name and role of one that is in).
//  BRG_OK, BRG_ENOMEM.
int brg__keys_allow(brg__keys_t *self, const uint8_t pub[BRG__KEY_BYTES], const char *name,
                    brg_key_role_t role, bool from_dir);

//  Take keys out: `what` is a key (40 characters of Z85) or a name (every
//  key of that name). Returns how many were removed, or BRG_ENOTFOUND.
int brg__keys_revoke(brg__keys_t *self, const char *what);

//  The entry of a key / of the first key named `name` with the given role.
//  BRG_OK or BRG_ENOTFOUND.
int brg__keys_lookup(brg__keys_t *self, const uint8_t pub[BRG__KEY_BYTES], brg__key_entry_t *out);
int brg__keys_by_name(brg__keys_t *self, const char *name, brg_key_role_t role,
                      brg__key_entry_t *out);

//  Make the from_dir entries exactly the certificates in dir (files whose
//  names do not end in "_secret" or start with '.'): new ones are added,
//  those whose file is gone are removed, entries added by API stay. A file
//  that does not parse is skipped and reported through bad(arg, path,
//  why). Returns the number of certificates loaded, BRG_ENOTFOUND if dir
//  does not exist (nothing changes), BRG_ENOMEM.
int brg__keys_load_dir(brg__keys_t *self, const char *dir,
                       void (*bad)(void *arg, const char *path, const char *why), void *arg);

//  How many keys are in; a counter that changes with every change.
size_t brg__keys_count(brg__keys_t *self);
uint64_t brg__keys_generation(brg__keys_t *self);

#endif
