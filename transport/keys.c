//  keys - Z85, certificate files, the key directory and the allow-list
//  (keys.h). Untrusted text: every file is read with a size bound, every
//  line and value with a length bound, and nothing here trusts a file to be
//  well formed.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "brigade/error.h"
#include "keys.h"

#define S_CERT_MAX (64 * 1024) // largest certificate file read
#define S_SECRET_SUFFIX "_secret"

//  ---------------------------------------------------------------------------
//  Z85

static const char s_z85_enc[86] = "0123456789abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

int
brg__z85_encode(char *out, const uint8_t *data, size_t size)
{
    if (size % 4 != 0)
        return BRG_EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < size; i += 4) {
        uint32_t v = (uint32_t)data[i] << 24 | (uint32_t)data[i + 1] << 16 |
                     (uint32_t)data[i + 2] << 8 | data[i + 3];
        for (int k = 4; k >= 0; k--) {
            out[o + (size_t)k] = s_z85_enc[v % 85];
            v /= 85;
        }
        o += 5;
    }
    out[o] = '\0';
    return BRG_OK;
}

static int
s_z85_value(char c)
{
    const char *p = c != '\0' ? strchr(s_z85_enc, c) : NULL;
    return p != NULL ? (int)(p - s_z85_enc) : -1;
}

int
brg__z85_decode(uint8_t *out, const char *text, size_t len)
{
    if (len % 5 != 0)
        return BRG_EINVAL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 5) {
        uint64_t v = 0;
        for (int k = 0; k < 5; k++) {
            int d = s_z85_value(text[i + (size_t)k]);
            if (d < 0)
                return BRG_EINVAL;
            v = v * 85 + (uint64_t)d;
        }
        if (v > 0xffffffffull) // "%%%%%" and friends do not fit 32 bits
            return BRG_EINVAL;
        out[o++] = (uint8_t)(v >> 24);
        out[o++] = (uint8_t)(v >> 16);
        out[o++] = (uint8_t)(v >> 8);
        out[o++] = (uint8_t)v;
    }
    return BRG_OK;
}

int
brg__key_from_text(uint8_t key[BRG__KEY_BYTES], const char *text)
{
    if (text == NULL || strlen(text) != BRG__KEY_Z85)
        return BRG_EINVAL;
    return brg__z85_decode(key, text, BRG__KEY_Z85);
}

//  ---------------------------------------------------------------------------
//  Certificates (ZPL, the subset zcert writes and reads).

//  One "name = value" line's value: quoted ("..." or '...') or bare up to a
//  comment. Writes at most cap - 1 bytes; false if it does not fit.
static bool
s_zpl_value(const char *p, const char *end, char *out, size_t cap)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    const char *v = p, *v_end;
    if (p < end && (*p == '"' || *p == '\'')) {
        char q = *p++;
        v = p;
        while (p < end && *p != q)
            p++;
        if (p == end)
            return false; // unterminated
        v_end = p;
    } else {
        while (p < end && *p != '#')
            p++;
        v_end = p;
        while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
            v_end--;
    }
    size_t n = (size_t)(v_end - v);
    if (n >= cap)
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

int
brg__cert_parse(const char *text, size_t len, brg__cert_t *cert, const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    memset(cert, 0, sizeof *cert);
    cert->role = BRG_KEY_CLIENT;
    enum { NONE, METADATA, CURVE, OTHER } section = NONE;
    bool have_pub = false;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = eol != NULL ? eol : end;
        const char *next = eol != NULL ? eol + 1 : end;
        if (line_end > p && line_end[-1] == '\r')
            line_end--;
        const char *s = p;
        size_t indent = 0;
        while (s < line_end && (*s == ' ' || *s == '\t')) {
            s++;
            indent++;
        }
        p = next;
        if (s == line_end || *s == '#')
            continue;
        if (memchr(s, '\0', (size_t)(line_end - s)) != NULL) {
            *why = "a zero byte in the text";
            return BRG_EINVAL;
        }
        const char *eq = memchr(s, '=', (size_t)(line_end - s));
        const char *key_end = eq != NULL ? eq : line_end;
        while (key_end > s && (key_end[-1] == ' ' || key_end[-1] == '\t'))
            key_end--;
        size_t klen = (size_t)(key_end - s);
        if (indent == 0) {
            if (eq != NULL) {
                // A top-level "name = value" is ZPL too; zcert writes none.
                section = OTHER;
                continue;
            }
            if (klen == 8 && memcmp(s, "metadata", 8) == 0)
                section = METADATA;
            else if (klen == 5 && memcmp(s, "curve", 5) == 0)
                section = CURVE;
            else
                section = OTHER;
            continue;
        }
        if (eq == NULL)
            continue; // a nested section name: nothing of ours lives there
        char value[128];
        if (section == CURVE && klen == 10 && memcmp(s, "public-key", 10) == 0) {
            if (!s_zpl_value(eq + 1, line_end, value, sizeof value) ||
                brg__key_from_text(cert->pub, value) != BRG_OK) {
                *why = "public-key is not 40 characters of Z85";
                return BRG_EINVAL;
            }
            have_pub = true;
        } else if (section == CURVE && klen == 10 && memcmp(s, "secret-key", 10) == 0) {
            if (!s_zpl_value(eq + 1, line_end, value, sizeof value) ||
                brg__key_from_text(cert->sec, value) != BRG_OK) {
                *why = "secret-key is not 40 characters of Z85";
                return BRG_EINVAL;
            }
            cert->has_sec = true;
        } else if (section == METADATA && klen == 4 && memcmp(s, "name", 4) == 0) {
            if (!s_zpl_value(eq + 1, line_end, cert->name, sizeof cert->name)) {
                *why = "metadata name is longer than 63 bytes";
                return BRG_EINVAL;
            }
        } else if (section == METADATA && klen == 4 && memcmp(s, "role", 4) == 0) {
            if (!s_zpl_value(eq + 1, line_end, value, sizeof value)) {
                *why = "metadata role is not \"node\", \"client\" or \"admin\"";
                return BRG_EINVAL;
            }
            if (strcmp(value, "node") == 0) {
                cert->role = BRG_KEY_NODE;
            } else if (strcmp(value, "client") == 0) {
                cert->role = BRG_KEY_CLIENT;
            } else if (strcmp(value, "admin") == 0) {
                cert->role = BRG_KEY_ADMIN;
            } else {
                *why = "metadata role is not \"node\", \"client\" or \"admin\"";
                return BRG_EINVAL;
            }
        }
    }
    if (!have_pub) {
        *why = "no curve public-key";
        return BRG_EINVAL;
    }
    return BRG_OK;
}

int
brg__cert_load(const char *path, brg__cert_t *cert, const char **why)
{
    const char *dummy;
    if (why == NULL)
        why = &dummy;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        *why = strerror(errno);
        return errno == ENOENT ? BRG_ENOTFOUND : BRG_ESYS;
    }
    char *buf = malloc(S_CERT_MAX);
    if (buf == NULL) {
        close(fd);
        *why = "out of memory";
        return BRG_ENOMEM;
    }
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, S_CERT_MAX - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            *why = strerror(errno);
            free(buf);
            close(fd);
            return BRG_ESYS;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == S_CERT_MAX) {
            *why = "larger than 64 KiB";
            free(buf);
            close(fd);
            return BRG_EINVAL;
        }
    }
    close(fd);
    int rc = brg__cert_parse(buf, len, cert, why);
    free(buf);
    return rc;
}

//  Write text to path through a temporary file created with `mode`.
static int
s_write_file(const char *path, const char *text, mode_t mode)
{
    char tmp[4096];
    static _Atomic unsigned s_tmp_seq;
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp%ld-%u", path, (long)getpid(),
                         atomic_fetch_add_explicit(&s_tmp_seq, 1, memory_order_relaxed)) >=
        sizeof tmp)
        return BRG_ESYS;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return BRG_ESYS;
    size_t len = strlen(text), off = 0;
    bool ok = fchmod(fd, mode) == 0; // the umask must not widen or narrow it
    while (ok && off < len) {
        ssize_t n = write(fd, text + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        off += ok ? (size_t)n : 0;
    }
    ok = ok && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return BRG_ESYS;
    }
    return BRG_OK;
}

const char *
brg__key_role_name(brg_key_role_t role)
{
    switch (role) {
    case BRG_KEY_NODE:
        return "node";
    case BRG_KEY_ADMIN:
        return "admin";
    case BRG_KEY_CLIENT:
        break;
    }
    return "client";
}

static void
s_cert_text(char *buf, size_t cap, const brg__cert_t *cert, bool secret)
{
    char pub[BRG__KEY_Z85 + 1], sec[BRG__KEY_Z85 + 1];
    brg__z85_encode(pub, cert->pub, BRG__KEY_BYTES);
    brg__z85_encode(sec, cert->sec, BRG__KEY_BYTES);
    snprintf(buf, cap,
             "#   ZeroMQ CURVE %s Certificate (written by Brigade)\n"
             "#   %s\n"
             "\n"
             "metadata\n"
             "    name = \"%s\"\n"
             "    role = \"%s\"\n"
             "curve\n"
             "    public-key = \"%s\"\n"
             "%s%s%s",
             secret ? "**Secret**" : "Public",
             secret ? "DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."
                    : "Exchange securely, or verify the key after exchange.",
             cert->name, brg__key_role_name(cert->role), pub, secret ? "    secret-key = \"" : "",
             secret ? sec : "", secret ? "\"\n" : "");
    memset(sec, 0, sizeof sec);
}

int
brg__cert_save(const char *path, const brg__cert_t *cert)
{
    char text[1024];
    if (cert->has_sec) {
        char spath[4096];
        if ((size_t)snprintf(spath, sizeof spath, "%s%s", path, S_SECRET_SUFFIX) >= sizeof spath)
            return BRG_ESYS;
        s_cert_text(text, sizeof text, cert, true);
        int rc = s_write_file(spath, text, 0600);
        memset(text, 0, sizeof text);
        if (rc != BRG_OK)
            return rc;
    }
    s_cert_text(text, sizeof text, cert, false);
    return s_write_file(path, text, 0644);
}

//  ---------------------------------------------------------------------------
//  The key directory.

int
brg__keydir_open(const char *dir, const char *name, brg__keygen_fn gen, brg__cert_t *cert,
                 char *why, size_t why_len)
{
    why[0] = '\0';
    struct stat st;
    if (stat(dir, &st) != 0) {
        // mkdir -p, the new levels 0700.
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s", dir) >= sizeof path) {
            snprintf(why, why_len, "key directory path too long");
            return BRG_EINVAL;
        }
        for (char *p = path + 1;; p++) {
            if (*p != '/' && *p != '\0')
                continue;
            char c = *p;
            *p = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST) {
                snprintf(why, why_len, "cannot create key directory %s: %s", path, strerror(errno));
                return BRG_ESYS;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        snprintf(why, why_len, "key directory %s is not a directory", dir);
        return BRG_EINVAL;
    }
    char pub_path[4096], sec_path[4096];
    if ((size_t)snprintf(pub_path, sizeof pub_path, "%s/node.key", dir) >= sizeof pub_path ||
        (size_t)snprintf(sec_path, sizeof sec_path, "%s/node.key%s", dir, S_SECRET_SUFFIX) >=
            sizeof sec_path) {
        snprintf(why, why_len, "key directory path too long");
        return BRG_EINVAL;
    }
    const char *reason = NULL;
    int rc = brg__cert_load(sec_path, cert, &reason);
    if (rc == BRG_OK) {
        if (stat(sec_path, &st) != 0 || (st.st_mode & 077) != 0) {
            snprintf(why, why_len,
                     "%s may be read by others (mode %03o): refusing it (chmod 600 it, or make a "
                     "new key)",
                     sec_path, (unsigned)(st.st_mode & 0777));
            memset(cert, 0, sizeof *cert);
            return BRG_EINVAL;
        }
        if (!cert->has_sec) {
            snprintf(why, why_len, "%s holds no secret-key", sec_path);
            return BRG_EINVAL;
        }
        return BRG_OK;
    }
    if (rc != BRG_ENOTFOUND) {
        snprintf(why, why_len, "cannot use %s: %s", sec_path, reason);
        return rc;
    }
    // First start: make a pair. Several processes may start at once with
    // one directory (nodes of a deployment sharing a key): the secret file
    // is written under a private name and linked into place, which fails
    // if another process got there first; then its pair is used.
    memset(cert, 0, sizeof *cert);
    if (gen(cert->pub, cert->sec) != 0) {
        snprintf(why, why_len, "cannot generate a key pair (libzmq without CURVE?)");
        return BRG_ESYS;
    }
    cert->has_sec = true;
    cert->role = BRG_KEY_NODE;
    snprintf(cert->name, sizeof cert->name, "%s", name != NULL ? name : "");
    static _Atomic unsigned s_seq; // threads of one process have one pid
    char tmp[4096 + 48];
    snprintf(tmp, sizeof tmp, "%s/.new-%ld-%u", dir, (long)getpid(),
             atomic_fetch_add_explicit(&s_seq, 1, memory_order_relaxed));
    char text[1024];
    s_cert_text(text, sizeof text, cert, true);
    rc = s_write_file(tmp, text, 0600);
    memset(text, 0, sizeof text);
    if (rc == BRG_OK && link(tmp, sec_path) != 0) {
        rc = errno == EEXIST ? BRG_EEXIST : BRG_ESYS;
        if (rc == BRG_ESYS)
            snprintf(why, why_len, "cannot write %s: %s", sec_path, strerror(errno));
    }
    unlink(tmp);
    if (rc == BRG_EEXIST) // another process made the pair first
        return brg__keydir_open(dir, name, gen, cert, why, why_len);
    if (rc != BRG_OK) {
        if (why[0] == '\0')
            snprintf(why, why_len, "cannot write a key file in %s: %s", dir, strerror(errno));
        memset(cert, 0, sizeof *cert);
        return BRG_ESYS;
    }
    brg__cert_t pub = *cert;
    pub.has_sec = false;
    if (brg__cert_save(pub_path, &pub) != BRG_OK) {
        snprintf(why, why_len, "cannot write %s: %s", pub_path, strerror(errno));
        memset(cert, 0, sizeof *cert);
        return BRG_ESYS;
    }
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  The allow-list: a small array under a mutex (tens of keys; lookups come
//  once per connection handshake, never per message).

struct brg__keys {
    pthread_mutex_t lock;
    brg__key_entry_t *v;
    size_t n, cap;
    uint64_t gen;
};

brg__keys_t *
brg__keys_new(void)
{
    brg__keys_t *self = calloc(1, sizeof *self);
    if (self != NULL)
        pthread_mutex_init(&self->lock, NULL);
    return self;
}

void
brg__keys_free(brg__keys_t **self_p)
{
    brg__keys_t *self = *self_p;
    if (self == NULL)
        return;
    pthread_mutex_destroy(&self->lock);
    free(self->v);
    free(self);
    *self_p = NULL;
}

static brg__key_entry_t *
s_find(brg__keys_t *self, const uint8_t pub[BRG__KEY_BYTES])
{
    for (size_t i = 0; i < self->n; i++)
        if (memcmp(self->v[i].pub, pub, BRG__KEY_BYTES) == 0)
            return &self->v[i];
    return NULL;
}

static int
s_allow_locked(brg__keys_t *self, const uint8_t pub[BRG__KEY_BYTES], const char *name,
               brg_key_role_t role, bool from_dir)
{
    brg__key_entry_t *e = s_find(self, pub);
    if (e == NULL) {
        if (self->n == self->cap) {
            size_t cap = self->cap ? self->cap * 2 : 16;
            brg__key_entry_t *v = realloc(self->v, cap * sizeof *v);
            if (v == NULL)
                return BRG_ENOMEM;
            self->v = v;
            self->cap = cap;
        }
        e = &self->v[self->n++];
        memcpy(e->pub, pub, BRG__KEY_BYTES);
    }
    snprintf(e->name, sizeof e->name, "%s", name != NULL ? name : "");
    e->role = role;
    e->from_dir = from_dir;
    self->gen++;
    return BRG_OK;
}

int
brg__keys_allow(brg__keys_t *self, const uint8_t pub[BRG__KEY_BYTES], const char *name,
                brg_key_role_t role, bool from_dir)
{
    pthread_mutex_lock(&self->lock);
    int rc = s_allow_locked(self, pub, name, role, from_dir);
    pthread_mutex_unlock(&self->lock);
    return rc;
}

int
brg__keys_revoke(brg__keys_t *self, const char *what)
{
    uint8_t key[BRG__KEY_BYTES];
    bool by_key = brg__key_from_text(key, what) == BRG_OK;
    int removed = 0;
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n;) {
        brg__key_entry_t *e = &self->v[i];
        if (by_key ? memcmp(e->pub, key, BRG__KEY_BYTES) == 0 : strcmp(e->name, what) == 0) {
            self->v[i] = self->v[--self->n];
            removed++;
        } else {
            i++;
        }
    }
    if (removed > 0)
        self->gen++;
    pthread_mutex_unlock(&self->lock);
    return removed > 0 ? removed : BRG_ENOTFOUND;
}

int
brg__keys_lookup(brg__keys_t *self, const uint8_t pub[BRG__KEY_BYTES], brg__key_entry_t *out)
{
    pthread_mutex_lock(&self->lock);
    brg__key_entry_t *e = s_find(self, pub);
    if (e != NULL && out != NULL)
        *out = *e;
    pthread_mutex_unlock(&self->lock);
    return e != NULL ? BRG_OK : BRG_ENOTFOUND;
}

int
brg__keys_by_name(brg__keys_t *self, const char *name, brg_key_role_t role, brg__key_entry_t *out)
{
    int rc = BRG_ENOTFOUND;
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n; i++) {
        if (self->v[i].role == role && strcmp(self->v[i].name, name) == 0) {
            if (out != NULL)
                *out = self->v[i];
            rc = BRG_OK;
            break;
        }
    }
    pthread_mutex_unlock(&self->lock);
    return rc;
}

static bool
s_ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int
brg__keys_load_dir(brg__keys_t *self, const char *dir,
                   void (*bad)(void *arg, const char *path, const char *why), void *arg)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? BRG_ENOTFOUND : BRG_ESYS;
    // Read every certificate first, then swap the from_dir entries under
    // the lock: a reader never sees a half-loaded list.
    brg__cert_t *certs = NULL;
    size_t n = 0, cap = 0;
    int rc = BRG_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' || s_ends_with(de->d_name, S_SECRET_SUFFIX) ||
            strstr(de->d_name, ".tmp") != NULL)
            continue;
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path)
            continue;
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            brg__cert_t *v = realloc(certs, ncap * sizeof *v);
            if (v == NULL) {
                rc = BRG_ENOMEM;
                break;
            }
            certs = v;
            cap = ncap;
        }
        const char *why = NULL;
        if (brg__cert_load(path, &certs[n], &why) != BRG_OK) {
            if (bad != NULL)
                bad(arg, path, why);
            continue;
        }
        certs[n].has_sec = false;
        memset(certs[n].sec, 0, sizeof certs[n].sec);
        n++;
    }
    closedir(d);
    if (rc != BRG_OK) {
        free(certs);
        return rc;
    }
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->n;) {
        if (self->v[i].from_dir)
            self->v[i] = self->v[--self->n];
        else
            i++;
    }
    for (size_t i = 0; i < n && rc == BRG_OK; i++) {
        brg__key_entry_t *e = s_find(self, certs[i].pub);
        if (e != NULL && !e->from_dir)
            continue; // added by API: that one stays as it is
        rc = s_allow_locked(self, certs[i].pub, certs[i].name, certs[i].role, true);
    }
    self->gen++;
    pthread_mutex_unlock(&self->lock);
    free(certs);
    return rc == BRG_OK ? (int)n : rc;
}

size_t
brg__keys_count(brg__keys_t *self)
{
    pthread_mutex_lock(&self->lock);
    size_t n = self->n;
    pthread_mutex_unlock(&self->lock);
    return n;
}

uint64_t
brg__keys_generation(brg__keys_t *self)
{
    pthread_mutex_lock(&self->lock);
    uint64_t g = self->gen;
    pthread_mutex_unlock(&self->lock);
    return g;
}
