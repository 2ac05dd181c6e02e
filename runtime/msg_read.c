//  msg_read - reading messages: a bounds-checked msgpack decoder and the
//  typed readers (brg_msg_read_*, brg_msg_skip, brg_msgpack_validate).
//
//  Design notes.
//
//  The decoder below is our own cursor over [data, data + size),
//  not msgpack_unpack: it allocates nothing, checks every length against the
//  bytes left before using it, and walks nested values with a fixed stack of
//  BRG_MSG_DEPTH_MAX counters rather than recursion. A container of n
//  elements needs at least n more bytes (every value is at least one byte),
//  so a hostile count (array32 of 0xffffffff in five bytes) fails at once,
//  and any walk costs at most one step per payload byte.
//
//  Like msg.c, this file includes only its own header and system headers.
#include "msg.h"

#include "brigade/error.h"

#include <assert.h>
#include <limits.h>
#include <string.h>

static uint32_t
s_load32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t
s_load16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

//  ---------------------------------------------------------------------------
//  The decoder: one value's header at a time, bounds-checked.

//  One decoded msgpack header (msg.h).
typedef brg__mp_value_t s_value_t;

//  Decode the value header at p, with avail bytes readable. Returns BRG_OK,
//  BRG_ENODATA if avail is 0, or BRG_EBADMSG if the bytes are reserved or
//  truncated, or a container claims more elements than bytes remain.
static int
s_head(const uint8_t *p, size_t avail, s_value_t *value)
{
    if (avail == 0)
        return BRG_ENODATA;
    uint8_t first = p[0];
    size_t head = 1; // header bytes
    size_t len = 0;  // body bytes (STR, BIN, EXT) or element count (ARRAY, MAP)
    memset(value, 0, sizeof *value);

    if (first <= 0x7f) {
        value->type = BRG_TYPE_INT;
        value->u = first;
    } else if (first >= 0xe0) {
        value->type = BRG_TYPE_INT;
        value->neg = true;
        value->i = (int8_t)first;
    } else if (first <= 0x8f) {
        value->type = BRG_TYPE_MAP;
        len = first & 0x0f;
    } else if (first <= 0x9f) {
        value->type = BRG_TYPE_ARRAY;
        len = first & 0x0f;
    } else if (first <= 0xbf) {
        value->type = BRG_TYPE_STR;
        len = first & 0x1f;
    } else {
        // Header bytes after the first, by format 0xc0 .. 0xdf: fixed-width
        // numbers, then the width of the length field for the sized types.
        static const uint8_t extra[32] = {
            0, 0, 0, 0, 1, 2, 4, 2, 3, 5, 4, 8, 1, 2, 4, 8, // c0 .. cf
            1, 2, 4, 8, 1, 1, 1, 1, 1, 1, 2, 4, 2, 4, 2, 4, // d0 .. df
        };
        if (first == 0xc1)
            return BRG_EBADMSG; // never used
        head = 1 + (size_t)extra[first - 0xc0];
        if (avail < head)
            return BRG_EBADMSG;
        const uint8_t *q = p + 1;
        switch (first) {
        case 0xc0:
            value->type = BRG_TYPE_NIL;
            break;
        case 0xc2:
        case 0xc3:
            value->type = BRG_TYPE_BOOL;
            value->b = first == 0xc3;
            break;
        case 0xc4:
        case 0xc5:
        case 0xc6:
            value->type = BRG_TYPE_BIN;
            len = first == 0xc4 ? q[0] : first == 0xc5 ? s_load16(q) : s_load32(q);
            break;
        case 0xc7:
        case 0xc8:
        case 0xc9:
            value->type = BRG_TYPE_EXT;
            len = first == 0xc7 ? q[0] : first == 0xc8 ? s_load16(q) : s_load32(q);
            value->ext_type = (int8_t)p[head - 1];
            break;
        case 0xca: {
            uint32_t bits = s_load32(q);
            float f;
            memcpy(&f, &bits, sizeof f);
            value->type = BRG_TYPE_FLOAT;
            value->f = f;
            break;
        }
        case 0xcb: {
            uint64_t bits = brg__load_be64(q);
            memcpy(&value->f, &bits, sizeof value->f);
            value->type = BRG_TYPE_FLOAT;
            break;
        }
        case 0xcc:
            value->type = BRG_TYPE_INT;
            value->u = q[0];
            break;
        case 0xcd:
            value->type = BRG_TYPE_INT;
            value->u = s_load16(q);
            break;
        case 0xce:
            value->type = BRG_TYPE_INT;
            value->u = s_load32(q);
            break;
        case 0xcf:
            value->type = BRG_TYPE_INT;
            value->u = brg__load_be64(q);
            break;
        case 0xd0:
        case 0xd1:
        case 0xd2:
        case 0xd3: {
            int64_t i = first == 0xd0   ? (int8_t)q[0]
                        : first == 0xd1 ? (int16_t)s_load16(q)
                        : first == 0xd2 ? (int32_t)s_load32(q)
                                        : (int64_t)brg__load_be64(q);
            value->type = BRG_TYPE_INT;
            // A signed format may hold a non-negative value; keep one form per value.
            if (i < 0) {
                value->neg = true;
                value->i = i;
            } else {
                value->u = (uint64_t)i;
            }
            break;
        }
        case 0xd4:
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8:
            value->type = BRG_TYPE_EXT;
            len = (size_t)1 << (first - 0xd4); // fixext 1, 2, 4, 8, 16
            value->ext_type = (int8_t)q[0];
            break;
        case 0xd9:
        case 0xda:
        case 0xdb:
            value->type = BRG_TYPE_STR;
            len = first == 0xd9 ? q[0] : first == 0xda ? s_load16(q) : s_load32(q);
            break;
        case 0xdc:
        case 0xdd:
            value->type = BRG_TYPE_ARRAY;
            len = first == 0xdc ? s_load16(q) : s_load32(q);
            break;
        default: // 0xde, 0xdf
            value->type = BRG_TYPE_MAP;
            len = first == 0xde ? s_load16(q) : s_load32(q);
            break;
        }
    }
    size_t left = avail - head;
    value->size = head;
    switch (value->type) {
    case BRG_TYPE_STR:
    case BRG_TYPE_BIN:
    case BRG_TYPE_EXT:
        if (len > left)
            return BRG_EBADMSG;
        value->len = (uint32_t)len;
        value->body = p + head;
        value->size = head + len;
        break;
    case BRG_TYPE_ARRAY:
    case BRG_TYPE_MAP:
        // Every element takes at least one byte: the check that makes a
        // hostile count fail here instead of in a 4-billion-step loop.
        if ((uint64_t)len * (value->type == BRG_TYPE_MAP ? 2 : 1) > left)
            return BRG_EBADMSG;
        value->len = (uint32_t)len;
        break;
    default:
        break;
    }
    return BRG_OK;
}

//  Walk one whole value at data[*pos], nested values included, at most
//  BRG_MSG_DEPTH_MAX containers deep. On success advance *pos past it.
//  BRG_ENODATA if *pos is at the end, else BRG_EBADMSG on malformed bytes.
static int
s_walk(const uint8_t *data, size_t len, size_t *pos)
{
    uint64_t left[BRG_MSG_DEPTH_MAX]; // elements still to walk in each open container
    int depth = 0;
    size_t at = *pos;
    for (;;) {
        s_value_t value;
        int rc = s_head(data + at, len - at, &value);
        if (rc < 0)
            return depth == 0 ? rc : BRG_EBADMSG;
        at += value.size;
        if (value.type == BRG_TYPE_ARRAY || value.type == BRG_TYPE_MAP) {
            if (depth == BRG_MSG_DEPTH_MAX)
                return BRG_EBADMSG;
            uint64_t n = value.type == BRG_TYPE_MAP ? 2 * (uint64_t)value.len : value.len;
            if (n > 0) {
                left[depth++] = n;
                continue;
            }
        }
        // A value is complete; so is every container it was the last element of.
        while (depth > 0 && --left[depth - 1] == 0)
            depth--;
        if (depth == 0)
            break;
    }
    *pos = at;
    return BRG_OK;
}

//  Decode the header at the cursor of a message.
static int
s_read(const brg_msg_t *self, size_t pos, s_value_t *value)
{
    // A cursor past the end is a caller bug; without asserts it reads as the end.
    assert(pos <= self->size);
    if (pos >= self->size)
        return BRG_ENODATA;
    return s_head(self->data + pos, self->size - pos, value);
}

//  ---------------------------------------------------------------------------
//  Readers. Each decodes the header at *pos, checks the type, and only then
//  writes its outputs and advances the cursor.

brg_type_t
brg_msg_peek(const brg_msg_t *self, size_t pos)
{
    assert(self);
    s_value_t value;
    int rc = s_read(self, pos, &value);
    if (rc == BRG_ENODATA)
        return BRG_TYPE_NONE;
    if (rc < 0)
        return BRG_TYPE_INVALID;
    return value.type;
}

//  Decode the value at pos and check that it has the wanted type: the common
//  head of every typed reader. Cursor untouched; errors as the readers'.
static int
s_read_as(const brg_msg_t *self, size_t pos, brg_type_t type, s_value_t *value)
{
    int rc = s_read(self, pos, value);
    if (rc < 0)
        return rc;
    return value->type == type ? BRG_OK : BRG_ETYPE;
}

int
brg_msg_read_nil(const brg_msg_t *self, size_t *pos)
{
    assert(self);
    assert(pos);
    s_value_t value;
    int rc = s_read_as(self, *pos, BRG_TYPE_NIL, &value);
    if (rc != BRG_OK)
        return rc;
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_read_bool(const brg_msg_t *self, size_t *pos, bool *out)
{
    assert(self);
    assert(pos);
    assert(out);
    s_value_t value;
    int rc = s_read_as(self, *pos, BRG_TYPE_BOOL, &value);
    if (rc != BRG_OK)
        return rc;
    *out = value.b;
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_read_int(const brg_msg_t *self, size_t *pos, int64_t *out)
{
    assert(self);
    assert(pos);
    assert(out);
    // Fast path: the common integer encodings without the generic decoder;
    // anything else, and any truncated value, takes the checked path below.
    if (*pos < self->size) {
        const uint8_t *q = self->data + *pos;
        size_t left = self->size - *pos;
        uint8_t b = q[0];
        if (b <= 0x7f || b >= 0xe0) {
            *out = (int8_t)b;
            if (b <= 0x7f)
                *out = b;
            *pos += 1;
            return BRG_OK;
        }
        if (b == 0xcc && left >= 2) {
            *out = q[1];
            *pos += 2;
            return BRG_OK;
        }
        if (b == 0xcd && left >= 3) {
            *out = (int64_t)((uint32_t)q[1] << 8 | q[2]);
            *pos += 3;
            return BRG_OK;
        }
        if (b == 0xce && left >= 5) {
            *out =
                (int64_t)((uint32_t)q[1] << 24 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 8 | q[4]);
            *pos += 5;
            return BRG_OK;
        }
    }
    s_value_t value;
    int rc = s_read_as(self, *pos, BRG_TYPE_INT, &value);
    if (rc != BRG_OK)
        return rc;
    if (!value.neg && value.u > INT64_MAX)
        return BRG_ERANGE;
    *out = value.neg ? value.i : (int64_t)value.u;
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_read_uint(const brg_msg_t *self, size_t *pos, uint64_t *out)
{
    assert(self);
    assert(pos);
    assert(out);
    s_value_t value;
    int rc = s_read_as(self, *pos, BRG_TYPE_INT, &value);
    if (rc != BRG_OK)
        return rc;
    if (value.neg)
        return BRG_ERANGE;
    *out = value.u;
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_read_double(const brg_msg_t *self, size_t *pos, double *out)
{
    assert(self);
    assert(pos);
    assert(out);
    s_value_t value;
    int rc = s_read(self, *pos, &value);
    if (rc < 0)
        return rc;
    if (value.type == BRG_TYPE_FLOAT)
        *out = value.f;
    else if (value.type == BRG_TYPE_INT)
        *out = value.neg ? (double)value.i : (double)value.u;
    else
        return BRG_ETYPE;
    *pos += value.size;
    return BRG_OK;
}

//  A str or bin value (type) at *pos: its bytes, in place.
static int
s_read_bytes(const brg_msg_t *self, size_t *pos, brg_type_t type, const void **body, size_t *len)
{
    assert(self);
    assert(pos);
    assert(body);
    assert(len);
    s_value_t value;
    int rc = s_read_as(self, *pos, type, &value);
    if (rc != BRG_OK)
        return rc;
    *body = value.body;
    *len = value.len;
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_read_str(const brg_msg_t *self, size_t *pos, const char **str, size_t *len)
{
    assert(str);
    const void *body;
    int rc = s_read_bytes(self, pos, BRG_TYPE_STR, &body, len);
    if (rc == BRG_OK)
        *str = body;
    return rc;
}

int
brg_msg_read_bin(const brg_msg_t *self, size_t *pos, const void **data, size_t *len)
{
    return s_read_bytes(self, pos, BRG_TYPE_BIN, data, len);
}

static int
s_read_container(const brg_msg_t *self, size_t *pos, brg_type_t type, uint32_t *count)
{
    assert(self);
    assert(pos);
    assert(count);
    s_value_t value;
    int rc = s_read_as(self, *pos, type, &value);
    if (rc != BRG_OK)
        return rc;
    *count = value.len;
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_read_array(const brg_msg_t *self, size_t *pos, uint32_t *count)
{
    return s_read_container(self, pos, BRG_TYPE_ARRAY, count);
}

int
brg_msg_read_map(const brg_msg_t *self, size_t *pos, uint32_t *count)
{
    return s_read_container(self, pos, BRG_TYPE_MAP, count);
}

int
brg_msg_read_ref(const brg_msg_t *self, size_t *pos, brg_ref_t *out)
{
    assert(self);
    assert(pos);
    assert(out);
    s_value_t value;
    int rc = s_read(self, *pos, &value);
    if (rc < 0)
        return rc;
    // Any other ext, or an ext 1 of another size, is not an address.
    if (value.type != BRG_TYPE_EXT || value.ext_type != BRG__MSG_EXT_REF ||
        value.len != BRG__MSG_REF_BYTES)
        return BRG_ETYPE;
    *out = brg__ref_of_ext(value.body);
    *pos += value.size;
    return BRG_OK;
}

int
brg_msg_skip(const brg_msg_t *self, size_t *pos)
{
    assert(self);
    assert(pos);
    assert(*pos <= self->size);
    if (*pos >= self->size)
        return BRG_ENODATA;
    // The same walk as brg_msgpack_validate: what it accepts can be skipped,
    // and a value nested deeper than BRG_MSG_DEPTH_MAX is BRG_EBADMSG here too.
    return s_walk(self->data, self->size, pos);
}

int
brg_msg_read_str_copy(const brg_msg_t *self, size_t *pos, char *buf, size_t len)
{
    assert(self);
    assert(pos);
    assert(buf);
    s_value_t value;
    int rc = s_read_as(self, *pos, BRG_TYPE_STR, &value);
    if (rc != BRG_OK)
        return rc;
    if (value.len >= len)
        return BRG_EMSGSIZE;
    memcpy(buf, value.body, value.len);
    buf[value.len] = '\0';
    *pos += value.size;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Whole payloads, and the cursor's internal entry points (msg.h).

int
brg__msgpack_head(const uint8_t *p, size_t avail, brg__mp_value_t *value)
{
    return s_head(p, avail, value);
}

int
brg__msgpack_skip(const uint8_t *data, size_t len, size_t *pos)
{
    assert(*pos <= len);
    return s_walk(data, len, pos);
}

int
brg_msg_count(const brg_msg_t *self)
{
    assert(self);
    return brg_msgpack_validate(self->data, self->size);
}

int
brg_msgpack_validate(const void *data, size_t len)
{
    assert(data || len == 0);
    const uint8_t *bytes = data;
    size_t pos = 0;
    int count = 0;
    while (pos < len) {
        if (s_walk(bytes, len, &pos) < 0)
            return BRG_EBADMSG;
        // Only a buffer over 2 GiB can hold more values than an int counts.
        if (count == INT_MAX)
            return BRG_EBADMSG;
        count++;
    }
    return count;
}
