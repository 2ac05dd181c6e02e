//  ref - actor addresses as text: format and parse.
//
//  Design notes.
//  The text form is "<node uuid>/<slot>.<generation>", the UUID in the usual
//  lowercase 8-4-4-4-12 form of its 16 bytes (node_hi holds bytes 0..7 and
//  node_lo bytes 8..15, both big-endian), slot = id & 0xffffffff and
//  generation = id >> 32, both in decimal.
//  Parsing takes text from outside (configuration, logs, other nodes), so it
//  never asserts on the text and is strict: exactly the form that
//  brg_ref_format writes (lowercase hex, decimal without sign, spaces or
//  leading zeros, each number within 32 bits, nothing after it). So a ref has
//  one text, and text is equal exactly when the refs are.
#include "runtime_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

//  Characters of the UUID part: 32 hex digits and 4 dashes.
#define BRG__REF_UUID_LEN 36

bool
brg_ref_is_none(brg_ref_t ref)
{
    return ref.node_hi == 0 && ref.node_lo == 0 && ref.id == 0;
}

bool
brg_ref_eq(brg_ref_t a, brg_ref_t b)
{
    return a.node_hi == b.node_hi && a.node_lo == b.node_lo && a.id == b.id;
}

//  True before UUID byte i, where the 8-4-4-4-12 form puts a dash.
static bool
s_dash_before(int i)
{
    return i == 4 || i == 6 || i == 8 || i == 10;
}

static uint8_t
s_uuid_byte(brg_ref_t ref, int i)
{
    uint64_t half = i < 8 ? ref.node_hi : ref.node_lo;
    return (uint8_t)(half >> (56 - 8 * (i % 8)));
}

int
brg_ref_format(brg_ref_t ref, char *buf, size_t len)
{
    assert(buf);
    static const char hex[] = "0123456789abcdef";
    // Build in a local buffer, so a buffer that is too small is left untouched.
    char text[BRG_REF_STRLEN];
    size_t n = 0;
    for (int i = 0; i < 16; i++) {
        if (s_dash_before(i))
            text[n++] = '-';
        uint8_t byte = s_uuid_byte(ref, i);
        text[n++] = hex[byte >> 4];
        text[n++] = hex[byte & 0x0f];
    }
    unsigned long slot = (unsigned long)(ref.id & 0xffffffffu);
    unsigned long generation = (unsigned long)(ref.id >> 32);
    // At most 1 + 10 + 1 + 10 characters: the text always fits in BRG_REF_STRLEN.
    n += (size_t)snprintf(text + n, sizeof text - n, "/%lu.%lu", slot, generation);
    if (n + 1 > len)
        return BRG_EINVAL;
    memcpy(buf, text, n + 1);
    return (int)n;
}

static int
s_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

//  Parse a decimal uint32 at *text, canonical form only (no sign, no leading
//  zero unless the number is 0). Advances *text past it; false if malformed.
static bool
s_parse_u32(const char **text, uint32_t *out)
{
    const char *p = *text;
    if (*p < '0' || *p > '9')
        return false;
    if (*p == '0' && p[1] >= '0' && p[1] <= '9')
        return false;
    uint64_t value = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        value = value * 10 + (uint64_t)(*p - '0');
        // Stops within 11 digits, before value could overflow 64 bits.
        if (value > UINT32_MAX)
            return false;
    }
    *out = (uint32_t)value;
    *text = p;
    return true;
}

int
brg_ref_parse(const char *text, brg_ref_t *ref)
{
    assert(text);
    assert(ref);
    uint64_t half[2] = {0, 0};
    const char *p = text;
    for (int i = 0; i < 16; i++) {
        if (s_dash_before(i)) {
            if (*p != '-')
                return BRG_EINVAL;
            p++;
        }
        // The first digit is checked before the second is read, so the NUL
        // of a short text is never passed.
        int hi = s_hex_digit(p[0]);
        if (hi < 0)
            return BRG_EINVAL;
        int lo = s_hex_digit(p[1]);
        if (lo < 0)
            return BRG_EINVAL;
        half[i / 8] = half[i / 8] << 8 | (uint64_t)(hi << 4 | lo);
        p += 2;
    }
    assert(p == text + BRG__REF_UUID_LEN);
    if (*p != '/')
        return BRG_EINVAL;
    p++;
    uint32_t slot, generation;
    if (!s_parse_u32(&p, &slot))
        return BRG_EINVAL;
    if (*p != '.')
        return BRG_EINVAL;
    p++;
    if (!s_parse_u32(&p, &generation))
        return BRG_EINVAL;
    if (*p != '\0')
        return BRG_EINVAL;
    ref->node_hi = half[0];
    ref->node_lo = half[1];
    ref->id = (uint64_t)generation << 32 | slot;
    return BRG_OK;
}
