//  test_msg - messages: builders, readers, the validator and the free lists.
#include <brigade.h>

#include "runtime/msg.h"

#include <check.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------------
//  Helpers.

//  An assertion for hot loops: Check's ck_assert_* records a mark point in the
//  runner's pipe on every success, which would dominate a 100,000-input run.
//  S_CHECK costs nothing until it fails.
#define S_CHECK(expr)                                                                              \
    do {                                                                                           \
        if (!(expr))                                                                               \
            ck_abort_msg("%s:%d: check failed: %s", __FILE__, __LINE__, #expr);                    \
    } while (0)

//  Point msg's payload at caller-owned bytes that no builder produced, so the
//  readers can be tried on malformed input. s_payload_return undoes it before
//  the message is destroyed.
typedef struct {
    uint8_t *data;
    uint32_t size;
    uint32_t cap;
} s_saved_payload_t;

static s_saved_payload_t
s_payload_borrow(brg_msg_t *msg, uint8_t *bytes, size_t len)
{
    s_saved_payload_t saved = {msg->data, msg->size, msg->cap};
    msg->data = bytes;
    msg->size = (uint32_t)len;
    msg->cap = (uint32_t)len;
    return saved;
}

static void
s_payload_return(brg_msg_t *msg, s_saved_payload_t saved)
{
    msg->data = saved.data;
    msg->size = saved.size;
    msg->cap = saved.cap;
}

//  A copy of len bytes in a block of exactly that size, so ASan and valgrind
//  catch a read one byte past the end.
static uint8_t *
s_exact_copy(const void *bytes, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    S_CHECK(copy != NULL);
    if (len)
        memcpy(copy, bytes, len);
    return copy;
}

//  ---------------------------------------------------------------------------
//  Tags.

START_TEST(test_msg_new_rejects_null_empty_and_too_long_tags)
{
    char tag[BRG_TAG_MAX + 2];
    ck_assert_ptr_null(brg_msg_new(NULL));
    ck_assert_ptr_null(brg_msg_new(""));

    memset(tag, 'a', BRG_TAG_MAX);
    tag[BRG_TAG_MAX] = '\0';
    brg_msg_t *msg = brg_msg_new(tag);
    ck_assert_ptr_nonnull(msg);
    ck_assert_str_eq(brg_msg_tag(msg), tag);
    brg_msg_destroy(&msg);

    memset(tag, 'a', BRG_TAG_MAX + 1);
    tag[BRG_TAG_MAX + 1] = '\0';
    ck_assert_ptr_null(brg_msg_new(tag));
}
END_TEST

START_TEST(test_msg_new_has_the_tag_and_an_empty_payload)
{
    brg_msg_t *msg = brg_msg_new("get");
    ck_assert_ptr_nonnull(msg);
    ck_assert_str_eq(brg_msg_tag(msg), "get");
    ck_assert_uint_eq(brg_msg_tag_hash(msg), brg_tag_hash("get"));
    ck_assert_uint_eq(brg_msg_size(msg), 0);
    ck_assert_int_eq(brg_msg_count(msg), 0);
    ck_assert(brg_ref_is_none(brg_msg_sender(msg)));
    ck_assert_int_eq(brg_msg_peek(msg, 0), BRG_TYPE_NONE);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_tag_hash_is_32_bit_fnv1a)
{
    ck_assert_uint_eq(brg_tag_hash(""), 0x811c9dc5u);
    ck_assert_uint_eq(brg_tag_hash("a"), 0xe40c292cu);
    ck_assert_uint_eq(brg_tag_hash("foobar"), 0xbf9cf968u);
}
END_TEST

START_TEST(test_msg_is_matches_only_the_same_tag)
{
    brg_msg_t *msg = brg_msg_new("get");
    ck_assert(brg_msg_is(msg, "get"));
    ck_assert(!brg_msg_is(msg, "ge"));
    ck_assert(!brg_msg_is(msg, "gets"));
    ck_assert(!brg_msg_is(msg, "GET"));
    ck_assert(!brg_msg_is(msg, ""));
    ck_assert(!brg_msg_is(msg, "a tag that is far longer than thirty-one bytes"));
    brg_msg_destroy(&msg);

    // "costarring" and "liquid" have the same FNV-1a hash: the bytes decide.
    ck_assert_uint_eq(brg_tag_hash("costarring"), brg_tag_hash("liquid"));
    msg = brg_msg_new("costarring");
    ck_assert(brg_msg_is(msg, "costarring"));
    ck_assert(!brg_msg_is(msg, "liquid"));
    brg_msg_destroy(&msg);
}
END_TEST

//  brg_tag / BRG_TAG / brg_msg_is_tag: the same answers as brg_msg_is, with
//  the hash computed once.
START_TEST(test_msg_is_tag_matches_only_the_same_tag)
{
    brg_tag_t get = brg_tag("get");
    ck_assert_str_eq(get.str, "get");
    ck_assert_uint_eq(get.hash, brg_tag_hash("get"));
    ck_assert_uint_eq(get.len, 3);
    brg_msg_t *msg = brg_msg_new("get");
    ck_assert(brg_msg_is_tag(msg, get));
    ck_assert(brg_msg_is_tag(msg, BRG_TAG("get")));
    ck_assert(!brg_msg_is_tag(msg, brg_tag("ge")));
    ck_assert(!brg_msg_is_tag(msg, BRG_TAG("gets")));
    ck_assert(!brg_msg_is_tag(msg, BRG_TAG("GET")));
    // Invalid tags match nothing, not even a message whose tag was never set.
    brg_tag_t empty = BRG_TAG("");
    ck_assert_uint_eq(empty.len, BRG_TAG_MAX + 1);
    ck_assert(!brg_msg_is_tag(msg, empty));
    ck_assert(!brg_msg_is_tag(msg, brg_tag("a tag that is far longer than thirty-one bytes")));
    brg_msg_destroy(&msg);
    msg = brg_msg_new("costarring"); // same FNV-1a hash as "liquid": the bytes decide
    ck_assert_uint_eq(BRG_TAG("liquid").hash, BRG_TAG("costarring").hash);
    ck_assert(brg_msg_is_tag(msg, BRG_TAG("costarring")));
    ck_assert(!brg_msg_is_tag(msg, BRG_TAG("liquid")));
    brg_msg_destroy(&msg);
}
END_TEST

//  One BRG_TAG call site used from many threads at once: every use sees the
//  same value whichever thread computed it (under TSan: no race either).
static brg_tag_t
s_shared_tag(void)
{
    return BRG_TAG("shared.tag");
}

static void *
s_tag_thread(void *arg)
{
    brg_msg_t *msg = arg;
    for (int i = 0; i < 10000; i++) {
        brg_tag_t t = s_shared_tag();
        S_CHECK(t.len == 10 && t.hash == brg_tag_hash("shared.tag"));
        S_CHECK(brg_msg_is_tag(msg, t));
    }
    return NULL;
}

START_TEST(test_msg_tag_cache_is_shared_safely_by_threads)
{
    brg_msg_t *msg = brg_msg_new("shared.tag");
    pthread_t threads[4];
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, s_tag_thread, msg), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(threads[i], NULL);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_set_tag_rejects_empty_and_too_long_tags_and_keeps_the_old_one)
{
    brg_msg_t *msg = brg_msg_new("old");
    ck_assert_int_eq(brg__msg_set_tag(msg, "x", 0), BRG_EINVAL);
    ck_assert_int_eq(brg__msg_set_tag(msg, "0123456789abcdef0123456789abcdef", 32), BRG_EINVAL);
    ck_assert(brg_msg_is(msg, "old"));
    ck_assert_int_eq(brg__msg_set_tag(msg, "newer", 3), BRG_OK);
    ck_assert_str_eq(brg_msg_tag(msg), "new");
    ck_assert(brg_msg_is(msg, "new"));
    ck_assert_uint_eq(brg_msg_tag_hash(msg), brg_tag_hash("new"));
    brg_msg_destroy(&msg);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Round trips.

START_TEST(test_msg_int_round_trips_at_every_encoding_boundary)
{
    static const struct {
        int64_t value;
        uint8_t first; // expected format byte
        size_t size;   // expected encoded bytes
    } cases[] = {
        {0, 0x00, 1},          {1, 0x01, 1},
        {127, 0x7f, 1},        {128, 0xcc, 2},
        {255, 0xcc, 2},        {256, 0xcd, 3},
        {65535, 0xcd, 3},      {65536, 0xce, 5},
        {4294967295, 0xce, 5}, {4294967296, 0xcf, 9},
        {INT64_MAX, 0xcf, 9},  {-1, 0xff, 1},
        {-32, 0xe0, 1},        {-33, 0xd0, 2},
        {-128, 0xd0, 2},       {-129, 0xd1, 3},
        {-32768, 0xd1, 3},     {-32769, 0xd2, 5},
        {INT32_MIN, 0xd2, 5},  {(int64_t)INT32_MIN - 1, 0xd3, 9},
        {INT64_MIN, 0xd3, 9},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_msg_t *msg = brg_msg_new("int");
        ck_assert_int_eq(brg_msg_add_int(msg, cases[i].value), BRG_OK);
        ck_assert_uint_eq(brg_msg_size(msg), cases[i].size);
        ck_assert_uint_eq(brg_msg_data(msg)[0], cases[i].first);
        ck_assert_int_eq(brg_msg_peek(msg, 0), BRG_TYPE_INT);

        size_t pos = 0;
        int64_t value = 0;
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_OK);
        ck_assert_int_eq(value, cases[i].value);
        ck_assert_uint_eq(pos, cases[i].size);

        pos = 0;
        uint64_t uvalue = 12345;
        if (cases[i].value >= 0) {
            ck_assert_int_eq(brg_msg_read_uint(msg, &pos, &uvalue), BRG_OK);
            ck_assert_uint_eq(uvalue, (uint64_t)cases[i].value);
        } else {
            ck_assert_int_eq(brg_msg_read_uint(msg, &pos, &uvalue), BRG_ERANGE);
            ck_assert_uint_eq(pos, 0);
            ck_assert_uint_eq(uvalue, 12345);
        }
        brg_msg_destroy(&msg);
    }
}
END_TEST

START_TEST(test_msg_uint_round_trips_up_to_uint64_max)
{
    static const uint64_t values[] = {
        0,         127,   128,         255,         256,
        65535,     65536, 4294967295u, 4294967296u, (uint64_t)INT64_MAX + 1,
        UINT64_MAX};
    brg_msg_t *msg = brg_msg_new("uint");
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        ck_assert_int_eq(brg_msg_add_uint(msg, values[i]), BRG_OK);
    ck_assert_int_eq(brg_msg_count(msg), (int)(sizeof values / sizeof values[0]));
    size_t pos = 0;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        uint64_t value;
        ck_assert_int_eq(brg_msg_read_uint(msg, &pos, &value), BRG_OK);
        ck_assert_uint_eq(value, values[i]);
    }
    ck_assert_uint_eq(pos, brg_msg_size(msg));
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_read_int_of_a_uint_above_int64_max_returns_erange_and_keeps_the_cursor)
{
    brg_msg_t *msg = brg_msg_new("big");
    brg_msg_add_uint(msg, (uint64_t)INT64_MAX + 1);
    brg_msg_add_uint(msg, UINT64_MAX);
    size_t pos = 0;
    int64_t value = 77;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_ERANGE);
    ck_assert_uint_eq(pos, 0);
    ck_assert_int_eq(value, 77);
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_ERANGE);
    ck_assert_uint_eq(pos, 9);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_double_round_trips_and_read_double_accepts_ints)
{
    static const double values[] = {0.0, 1.5, -2.25, DBL_MAX, DBL_MIN, -DBL_MAX, 1e-300};
    brg_msg_t *msg = brg_msg_new("double");
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
        ck_assert_int_eq(brg_msg_add_double(msg, values[i]), BRG_OK);
    brg_msg_add_double(msg, -0.0);
    brg_msg_add_double(msg, INFINITY);
    brg_msg_add_double(msg, -INFINITY);
    brg_msg_add_double(msg, NAN);
    brg_msg_add_int(msg, -7);
    brg_msg_add_uint(msg, UINT64_MAX);
    brg_msg_add_int(msg, INT64_MIN);
    // A float32 1.5, as another encoder would write it.
    static const uint8_t float32[] = {0xca, 0x3f, 0xc0, 0x00, 0x00};
    ck_assert_int_eq(brg_msg_add_raw(msg, float32, sizeof float32), BRG_OK);

    size_t pos = 0;
    double value;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_FLOAT);
        ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
        ck_assert(value == values[i]);
    }
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(value == 0.0 && signbit(value));
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(isinf(value) && value > 0);
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(isinf(value) && value < 0);
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(isnan(value));
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(value == -7.0);
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(value == (double)UINT64_MAX);
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(value == (double)INT64_MIN);
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_FLOAT);
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &value), BRG_OK);
    ck_assert(value == 1.5);
    ck_assert_uint_eq(pos, brg_msg_size(msg));
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_nil_and_bool_round_trip)
{
    brg_msg_t *msg = brg_msg_new("flags");
    ck_assert_int_eq(brg_msg_add_nil(msg), BRG_OK);
    ck_assert_int_eq(brg_msg_add_bool(msg, true), BRG_OK);
    ck_assert_int_eq(brg_msg_add_bool(msg, false), BRG_OK);
    ck_assert_uint_eq(brg_msg_size(msg), 3);
    ck_assert_mem_eq(brg_msg_data(msg), "\xc0\xc3\xc2", 3);

    size_t pos = 0;
    bool value = false;
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_NIL);
    ck_assert_int_eq(brg_msg_read_nil(msg, &pos), BRG_OK);
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_BOOL);
    ck_assert_int_eq(brg_msg_read_bool(msg, &pos, &value), BRG_OK);
    ck_assert(value);
    ck_assert_int_eq(brg_msg_read_bool(msg, &pos, &value), BRG_OK);
    ck_assert(!value);
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_NONE);
    ck_assert_int_eq(brg_msg_read_nil(msg, &pos), BRG_ENODATA);
    ck_assert_uint_eq(pos, 3);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_str_round_trips_at_the_str8_str16_str32_boundaries)
{
    static const struct {
        size_t len;
        uint8_t first;
        size_t head;
    } cases[] = {
        {0, 0xa0, 1},   {31, 0xbf, 1},    {32, 0xd9, 2},    {255, 0xd9, 2},
        {256, 0xda, 3}, {65535, 0xda, 3}, {65536, 0xdb, 5}, {100000, 0xdb, 5},
    };
    char *text = malloc(100000);
    for (size_t i = 0; i < 100000; i++)
        text[i] = (char)('a' + i % 26);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_msg_t *msg = brg_msg_new("str");
        ck_assert_int_eq(brg_msg_add_strn(msg, text, cases[i].len), BRG_OK);
        ck_assert_uint_eq(brg_msg_size(msg), cases[i].head + cases[i].len);
        ck_assert_uint_eq(brg_msg_data(msg)[0], cases[i].first);
        ck_assert_int_eq(brg_msg_peek(msg, 0), BRG_TYPE_STR);
        size_t pos = 0, len = 1;
        const char *str = NULL;
        ck_assert_int_eq(brg_msg_read_str(msg, &pos, &str, &len), BRG_OK);
        ck_assert_uint_eq(len, cases[i].len);
        ck_assert(len == 0 || memcmp(str, text, len) == 0);
        ck_assert_uint_eq(pos, brg_msg_size(msg));
        brg_msg_destroy(&msg);
    }
    free(text);
}
END_TEST

START_TEST(test_msg_str_keeps_embedded_nuls_and_str_copy_checks_the_room)
{
    brg_msg_t *msg = brg_msg_new("str");
    ck_assert_int_eq(brg_msg_add_strn(msg, "a\0b", 3), BRG_OK);
    ck_assert_int_eq(brg_msg_add_str(msg, "hello"), BRG_OK);
    ck_assert_int_eq(brg_msg_add_strn(msg, NULL, 0), BRG_OK);

    size_t pos = 0, len = 0;
    const char *str = NULL;
    ck_assert_int_eq(brg_msg_read_str(msg, &pos, &str, &len), BRG_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(str, "a\0b", 3);

    char buf[6];
    memset(buf, 'x', sizeof buf);
    size_t before = pos;
    ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, buf, 5), BRG_EMSGSIZE);
    ck_assert_uint_eq(pos, before);
    ck_assert_int_eq(buf[0], 'x');
    ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, buf, 6), BRG_OK);
    ck_assert_str_eq(buf, "hello");
    ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, buf, 1), BRG_OK);
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, buf, 6), BRG_ENODATA);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_bin_round_trips_at_the_bin8_bin16_bin32_boundaries)
{
    static const struct {
        size_t len;
        uint8_t first;
        size_t head;
    } cases[] = {
        {0, 0xc4, 2},   {1, 0xc4, 2},     {255, 0xc4, 2},
        {256, 0xc5, 3}, {65535, 0xc5, 3}, {65536, 0xc6, 5},
    };
    uint8_t *bytes = malloc(65536);
    for (size_t i = 0; i < 65536; i++)
        bytes[i] = (uint8_t)(i * 7 + 3);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        brg_msg_t *msg = brg_msg_new("bin");
        ck_assert_int_eq(brg_msg_add_bin(msg, bytes, cases[i].len), BRG_OK);
        ck_assert_uint_eq(brg_msg_size(msg), cases[i].head + cases[i].len);
        ck_assert_uint_eq(brg_msg_data(msg)[0], cases[i].first);
        ck_assert_int_eq(brg_msg_peek(msg, 0), BRG_TYPE_BIN);
        size_t pos = 0, len = 1;
        const void *data = NULL;
        ck_assert_int_eq(brg_msg_read_bin(msg, &pos, &data, &len), BRG_OK);
        ck_assert_uint_eq(len, cases[i].len);
        ck_assert(len == 0 || memcmp(data, bytes, len) == 0);
        ck_assert_uint_eq(pos, brg_msg_size(msg));
        brg_msg_destroy(&msg);
    }
    free(bytes);
}
END_TEST

START_TEST(test_msg_nested_arrays_and_maps_round_trip_and_skip_as_one_value)
{
    // [1, {"k": [nil, true], "x": 2.5}, "s"], then 9
    brg_msg_t *msg = brg_msg_new("nested");
    brg_msg_add_array(msg, 3);
    brg_msg_add_int(msg, 1);
    brg_msg_add_map(msg, 2);
    brg_msg_add_str(msg, "k");
    brg_msg_add_array(msg, 2);
    brg_msg_add_nil(msg);
    brg_msg_add_bool(msg, true);
    brg_msg_add_str(msg, "x");
    brg_msg_add_double(msg, 2.5);
    brg_msg_add_str(msg, "s");
    brg_msg_add_int(msg, 9);
    ck_assert_int_eq(brg_msg_count(msg), 2);

    size_t pos = 0, len;
    uint32_t count;
    int64_t i;
    bool b;
    double d;
    const char *str;
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_ARRAY);
    ck_assert_int_eq(brg_msg_read_array(msg, &pos, &count), BRG_OK);
    ck_assert_uint_eq(count, 3);
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &i), BRG_OK);
    ck_assert_int_eq(i, 1);
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_MAP);
    ck_assert_int_eq(brg_msg_read_map(msg, &pos, &count), BRG_OK);
    ck_assert_uint_eq(count, 2);
    ck_assert_int_eq(brg_msg_read_str(msg, &pos, &str, &len), BRG_OK);
    ck_assert_uint_eq(len, 1);
    ck_assert_mem_eq(str, "k", len);
    ck_assert_int_eq(brg_msg_read_array(msg, &pos, &count), BRG_OK);
    ck_assert_uint_eq(count, 2);
    ck_assert_int_eq(brg_msg_read_nil(msg, &pos), BRG_OK);
    ck_assert_int_eq(brg_msg_read_bool(msg, &pos, &b), BRG_OK);
    ck_assert(b);
    ck_assert_int_eq(brg_msg_read_str(msg, &pos, &str, &len), BRG_OK);
    ck_assert_uint_eq(len, 1);
    ck_assert_mem_eq(str, "x", len);
    ck_assert_int_eq(brg_msg_read_double(msg, &pos, &d), BRG_OK);
    ck_assert(d == 2.5);
    ck_assert_int_eq(brg_msg_read_str(msg, &pos, &str, &len), BRG_OK);
    ck_assert_uint_eq(len, 1);
    ck_assert_mem_eq(str, "s", len);
    size_t end_of_array = pos;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &i), BRG_OK);
    ck_assert_int_eq(i, 9);

    pos = 0;
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    ck_assert_uint_eq(pos, end_of_array);
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    ck_assert_uint_eq(pos, brg_msg_size(msg));
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_ENODATA);
    ck_assert_uint_eq(pos, brg_msg_size(msg));
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_ref_round_trips_as_ext_type_1_big_endian)
{
    brg_ref_t ref = {0x0011223344556677u, 0x8899aabbccddeeffu, (7ull << 32) | 42};
    brg_msg_t *msg = brg_msg_new("ref");
    ck_assert_int_eq(brg_msg_add_ref(msg, ref), BRG_OK);
    ck_assert_int_eq(brg_msg_add_ref(msg, BRG_REF_NONE), BRG_OK);
    static const uint8_t expected[27] = {
        0xc7, 0x18, 0x01, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa,
        0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x2a,
    };
    ck_assert_uint_eq(brg_msg_size(msg), 54);
    ck_assert_mem_eq(brg_msg_data(msg), expected, sizeof expected);

    size_t pos = 0;
    brg_ref_t out;
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_EXT);
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &out), BRG_OK);
    ck_assert(brg_ref_eq(out, ref));
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &out), BRG_OK);
    ck_assert(brg_ref_is_none(out));
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_read_ref_of_another_ext_returns_etype)
{
    uint8_t other_type[27] = {0xc7, 0x18, 0x02}; // ext 2, 24 bytes
    uint8_t other_size[18] = {0xd8, 0x01};       // fixext 16, type 1
    brg_msg_t *msg = brg_msg_new("ext");
    ck_assert_int_eq(brg_msg_add_raw(msg, other_type, sizeof other_type), BRG_OK);
    ck_assert_int_eq(brg_msg_add_raw(msg, other_size, sizeof other_size), BRG_OK);
    brg_ref_t out = {1, 2, 3};
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_EXT);
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &out), BRG_ETYPE);
    ck_assert_uint_eq(pos, 0);
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_EXT);
    ck_assert_int_eq(brg_msg_read_ref(msg, &pos, &out), BRG_ETYPE);
    ck_assert_uint_eq(pos, sizeof other_type);
    ck_assert(brg_ref_eq(out, ((brg_ref_t){1, 2, 3})));
    brg_msg_destroy(&msg);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Wrong types, the end, truncation.

enum {
    S_READ_NIL,
    S_READ_BOOL,
    S_READ_INT,
    S_READ_UINT,
    S_READ_DOUBLE,
    S_READ_STR,
    S_READ_BIN,
    S_READ_ARRAY,
    S_READ_MAP,
    S_READ_REF,
    S_READ_STR_COPY,
    S_READERS
};

//  Run reader `which` at *pos; on an error check that its outputs, preset to
//  a pattern, are untouched.
static int
s_read_with(const brg_msg_t *msg, int which, size_t *pos)
{
    union {
        bool b;
        int64_t i;
        uint64_t u;
        double d;
        uint32_t count;
        brg_ref_t ref;
        char buf[16];
    } out, pattern;
    const char *str = (const char *)&pattern;
    const void *bin = &pattern;
    size_t len = 0x5a5a;
    memset(&pattern, 0x5a, sizeof pattern);
    memcpy(&out, &pattern, sizeof out);
    int rc = BRG_EINVAL;
    switch (which) {
    case S_READ_NIL:
        rc = brg_msg_read_nil(msg, pos);
        break;
    case S_READ_BOOL:
        rc = brg_msg_read_bool(msg, pos, &out.b);
        break;
    case S_READ_INT:
        rc = brg_msg_read_int(msg, pos, &out.i);
        break;
    case S_READ_UINT:
        rc = brg_msg_read_uint(msg, pos, &out.u);
        break;
    case S_READ_DOUBLE:
        rc = brg_msg_read_double(msg, pos, &out.d);
        break;
    case S_READ_STR:
        rc = brg_msg_read_str(msg, pos, &str, &len);
        break;
    case S_READ_BIN:
        rc = brg_msg_read_bin(msg, pos, &bin, &len);
        break;
    case S_READ_ARRAY:
        rc = brg_msg_read_array(msg, pos, &out.count);
        break;
    case S_READ_MAP:
        rc = brg_msg_read_map(msg, pos, &out.count);
        break;
    case S_READ_REF:
        rc = brg_msg_read_ref(msg, pos, &out.ref);
        break;
    case S_READ_STR_COPY:
        rc = brg_msg_read_str_copy(msg, pos, out.buf, sizeof out.buf);
        break;
    }
    if (rc < 0) {
        S_CHECK(memcmp(&out, &pattern, sizeof out) == 0);
        S_CHECK(str == (const char *)&pattern);
        S_CHECK(bin == &pattern);
        S_CHECK(len == 0x5a5a);
    }
    return rc;
}

START_TEST(test_msg_read_of_another_type_returns_etype_and_keeps_the_cursor)
{
    // One value of each kind, and the readers that accept it; a reader of the
    // right type that cannot hold the value gives BRG_ERANGE instead.
    brg_msg_t *msg = brg_msg_new("types");
    uint32_t accepts[11];
    uint32_t out_of_range = 1u << S_READ_UINT; // only for -5000
    size_t n = 0;
    brg_msg_add_nil(msg);
    accepts[n++] = 1u << S_READ_NIL;
    brg_msg_add_bool(msg, true);
    accepts[n++] = 1u << S_READ_BOOL;
    brg_msg_add_int(msg, 5);
    accepts[n++] = 1u << S_READ_INT | 1u << S_READ_UINT | 1u << S_READ_DOUBLE;
    brg_msg_add_int(msg, -5000);
    accepts[n++] = 1u << S_READ_INT | 1u << S_READ_DOUBLE;
    brg_msg_add_double(msg, 1.5);
    accepts[n++] = 1u << S_READ_DOUBLE;
    brg_msg_add_str(msg, "s");
    accepts[n++] = 1u << S_READ_STR | 1u << S_READ_STR_COPY;
    brg_msg_add_bin(msg, "b", 1);
    accepts[n++] = 1u << S_READ_BIN;
    brg_msg_add_array(msg, 0);
    accepts[n++] = 1u << S_READ_ARRAY;
    brg_msg_add_map(msg, 0);
    accepts[n++] = 1u << S_READ_MAP;
    brg_msg_add_ref(msg, (brg_ref_t){1, 2, 3});
    accepts[n++] = 1u << S_READ_REF;
    static const uint8_t ext5[] = {0xd4, 0x05, 0x00};
    brg_msg_add_raw(msg, ext5, sizeof ext5);
    accepts[n++] = 0;

    size_t pos = 0;
    for (size_t v = 0; v < n; v++) {
        for (int which = 0; which < S_READERS; which++) {
            if (accepts[v] & 1u << which)
                continue;
            bool range = v == 3 && (out_of_range & 1u << which);
            size_t before = pos;
            ck_assert_int_eq(s_read_with(msg, which, &pos), range ? BRG_ERANGE : BRG_ETYPE);
            ck_assert_uint_eq(pos, before);
        }
        for (int which = 0; which < S_READERS; which++) {
            if (!(accepts[v] & 1u << which))
                continue;
            size_t at = pos;
            ck_assert_int_eq(s_read_with(msg, which, &at), BRG_OK);
            ck_assert_uint_gt(at, pos);
        }
        ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    }
    ck_assert_uint_eq(pos, brg_msg_size(msg));
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_read_int_of_a_string_returns_etype)
{
    brg_msg_t *msg = brg_msg_new_str("name", "bob");
    size_t pos = 0;
    int64_t value = 3;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_ETYPE);
    ck_assert_uint_eq(pos, 0);
    ck_assert_int_eq(value, 3);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_every_reader_returns_enodata_at_the_end)
{
    brg_msg_t *msg = brg_msg_new_int("one", 1);
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    for (int which = 0; which < S_READERS; which++) {
        size_t at = pos;
        ck_assert_int_eq(s_read_with(msg, which, &at), BRG_ENODATA);
        ck_assert_uint_eq(at, pos);
    }
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_ENODATA);
    ck_assert_int_eq(brg_msg_peek(msg, pos), BRG_TYPE_NONE);
    brg_msg_destroy(&msg);
}
END_TEST

//  A message with one value of every format family; bounds[k] is the payload
//  size after k + 1 values.
static brg_msg_t *
s_sample_msg(size_t *bounds, size_t *nbounds)
{
    brg_msg_t *msg = brg_msg_new("sample");
    uint8_t bin[300];
    char str[300];
    memset(bin, 0xab, sizeof bin);
    memset(str, 's', sizeof str);
    size_t n = 0;
#define S_ADD(call)                                                                                \
    do {                                                                                           \
        ck_assert_int_eq(call, BRG_OK);                                                            \
        bounds[n++] = brg_msg_size(msg);                                                           \
    } while (0)
    S_ADD(brg_msg_add_nil(msg));
    S_ADD(brg_msg_add_bool(msg, false));
    S_ADD(brg_msg_add_int(msg, -1));
    S_ADD(brg_msg_add_int(msg, 200));
    S_ADD(brg_msg_add_int(msg, -30000));
    S_ADD(brg_msg_add_int(msg, 70000));
    S_ADD(brg_msg_add_int(msg, INT64_MIN));
    S_ADD(brg_msg_add_uint(msg, UINT64_MAX));
    S_ADD(brg_msg_add_double(msg, 3.25));
    S_ADD(brg_msg_add_raw(msg, "\xca\x3f\xc0\x00\x00", 5));
    S_ADD(brg_msg_add_strn(msg, str, 5));
    S_ADD(brg_msg_add_strn(msg, str, 40));
    S_ADD(brg_msg_add_strn(msg, str, 300));
    S_ADD(brg_msg_add_bin(msg, bin, 3));
    S_ADD(brg_msg_add_bin(msg, bin, 300));
    S_ADD(brg_msg_add_ref(msg, (brg_ref_t){5, 6, 7}));
    S_ADD(brg_msg_add_raw(msg, "\xd6\x09\x01\x02\x03\x04", 6));     // fixext 4
    S_ADD(brg_msg_add_raw(msg, "\xc8\x00\x02\x09\x01\x02", 6));     // ext16
    S_ADD(brg_msg_add_raw(msg, "\xdc\x00\x02\x01\x02", 5));         // array16
    S_ADD(brg_msg_add_raw(msg, "\xde\x00\x01\x01\x02", 5));         // map16
    S_ADD(brg_msg_add_raw(msg, "\xdd\x00\x00\x00\x01\xc0", 6));     // array32
    S_ADD(brg_msg_add_raw(msg, "\xdf\x00\x00\x00\x01\xc0\xc0", 7)); // map32
    ck_assert_int_eq(brg_msg_add_map(msg, 1), BRG_OK);
    ck_assert_int_eq(brg_msg_add_str(msg, "list"), BRG_OK);
    ck_assert_int_eq(brg_msg_add_array(msg, 2), BRG_OK);
    ck_assert_int_eq(brg_msg_add_int(msg, 1), BRG_OK);
    S_ADD(brg_msg_add_array(msg, 0));
#undef S_ADD
    *nbounds = n;
    return msg;
}

START_TEST(test_msgpack_validate_rejects_every_truncation_of_a_valid_payload)
{
    size_t bounds[32], nbounds;
    brg_msg_t *msg = s_sample_msg(bounds, &nbounds);
    size_t size = brg_msg_size(msg);
    ck_assert_uint_eq(bounds[nbounds - 1], size);
    ck_assert_int_eq(brg_msg_count(msg), (int)nbounds);

    size_t k = 0; // values complete within the first len bytes
    for (size_t len = 0; len <= size; len++) {
        while (k < nbounds && bounds[k] <= len)
            k++;
        bool at_bound = len == 0 || bounds[k - 1] == len;
        uint8_t *copy = s_exact_copy(brg_msg_data(msg), len);
        int rc = brg_msgpack_validate(copy, len);
        if (at_bound)
            ck_assert_int_eq(rc, (int)k);
        else
            ck_assert_msg(rc == BRG_EBADMSG, "prefix of %zu bytes: rc %d", len, rc);
        free(copy);
    }
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_readers_return_ebadmsg_on_a_truncated_payload)
{
    size_t bounds[32], nbounds;
    brg_msg_t *msg = s_sample_msg(bounds, &nbounds);
    size_t size = brg_msg_size(msg);
    brg_msg_t *view = brg_msg_new("view");
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = s_exact_copy(brg_msg_data(msg), len);
        s_saved_payload_t saved = s_payload_borrow(view, copy, len);
        // Skip whole values to the one that was cut, then try every reader on it.
        size_t pos = 0;
        int rc;
        while ((rc = brg_msg_skip(view, &pos)) == BRG_OK)
            ;
        bool at_bound = false;
        for (size_t k = 0; k < nbounds; k++)
            at_bound = at_bound || bounds[k] == len;
        if (len == 0 || at_bound) {
            ck_assert_int_eq(rc, BRG_ENODATA);
            ck_assert_uint_eq(pos, len);
        } else {
            ck_assert_int_eq(rc, BRG_EBADMSG);
            ck_assert_uint_lt(pos, len);
            for (int which = 0; which < S_READERS; which++) {
                size_t at = pos;
                rc = s_read_with(view, which, &at);
                // A container header may be whole although its elements are not.
                ck_assert(rc == BRG_EBADMSG || rc == BRG_ETYPE ||
                          ((which == S_READ_ARRAY || which == S_READ_MAP) && rc == BRG_OK));
                if (rc < 0)
                    ck_assert_uint_eq(at, pos);
            }
        }
        s_payload_return(view, saved);
        free(copy);
    }
    brg_msg_destroy(&view);
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msgpack_validate_rejects_hostile_lengths_at_once)
{
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\xdd\xff\xff\xff\xff", 5},             // array32 of 4 billion, nothing after
        {"\xdf\xff\xff\xff\xff", 5},             // map32 of 4 billion
        {"\xdb\xff\xff\xff\xff", 5},             // str32 of 4 GiB
        {"\xc6\xff\xff\xff\xff", 5},             // bin32 of 4 GiB
        {"\xc9\xff\xff\xff\xff\x01", 6},         // ext32 of 4 GiB
        {"\xdc\xff\xff\xc0\xc0", 5},             // array16 of 65535 with two elements
        {"\x93\x01\x02", 3},                     // fixarray of 3 with two elements
        {"\x82\x01\x02\x03", 4},                 // fixmap of 2 with three of four
        {"\xdf\x00\x00\x00\x02\xc0\xc0\xc0", 8}, // map32 of 2 needs 4 values
        {"\xc1", 1},                             // the byte msgpack never uses
        {"\xcf\x00\x00", 3},                     // uint64 cut short
        {"\xd9", 1},                             // str8 without its length
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *copy = s_exact_copy(cases[i].bytes, cases[i].len);
        ck_assert_msg(brg_msgpack_validate(copy, cases[i].len) == BRG_EBADMSG, "case %zu", i);
        free(copy);
    }

    // 64 nested array32 headers each claiming 4 billion elements: fails at the first.
    uint8_t deep[64 * 5];
    for (size_t i = 0; i < 64; i++)
        memcpy(deep + 5 * i, "\xdd\xff\xff\xff\xff", 5);
    ck_assert_int_eq(brg_msgpack_validate(deep, sizeof deep), BRG_EBADMSG);

    // Through a message: a hostile header reads as malformed, not as a count.
    brg_msg_t *view = brg_msg_new("view");
    s_saved_payload_t saved = s_payload_borrow(view, deep, sizeof deep);
    size_t pos = 0;
    uint32_t count = 9;
    ck_assert_int_eq(brg_msg_peek(view, pos), BRG_TYPE_INVALID);
    ck_assert_int_eq(brg_msg_read_array(view, &pos, &count), BRG_EBADMSG);
    ck_assert_int_eq(brg_msg_skip(view, &pos), BRG_EBADMSG);
    ck_assert_uint_eq(pos, 0);
    ck_assert_uint_eq(count, 9);
    s_payload_return(view, saved);
    brg_msg_destroy(&view);
}
END_TEST

START_TEST(test_msgpack_validate_accepts_depth_64_and_rejects_depth_65)
{
    uint8_t bytes[2 * 70];
    // 64 nested fixarrays of one element around a nil.
    memset(bytes, 0x91, 64);
    bytes[64] = 0xc0;
    ck_assert_int_eq(brg_msgpack_validate(bytes, 65), 1);
    // Two such values in a row: depth starts again at each value.
    memcpy(bytes + 65, bytes, 65);
    ck_assert_int_eq(brg_msgpack_validate(bytes, 130), 2);
    // 65 nested arrays.
    memset(bytes, 0x91, 65);
    bytes[65] = 0xc0;
    ck_assert_int_eq(brg_msgpack_validate(bytes, 66), BRG_EBADMSG);
    // An empty array as the 65th container counts too.
    memset(bytes, 0x91, 64);
    bytes[64] = 0x90;
    ck_assert_int_eq(brg_msgpack_validate(bytes, 65), BRG_EBADMSG);
    // Maps: {nil: {nil: ... nil}} 64 and 65 deep.
    for (size_t i = 0; i < 65; i++) {
        bytes[2 * i] = 0x81;
        bytes[2 * i + 1] = 0xc0;
    }
    bytes[130] = 0xc0;
    ck_assert_int_eq(brg_msgpack_validate(bytes + 2, 129), 1);
    ck_assert_int_eq(brg_msgpack_validate(bytes, 131), BRG_EBADMSG);

    // A message built 65 deep cannot be skipped either: one rule for both.
    brg_msg_t *msg = brg_msg_new("deep");
    for (int i = 0; i < 65; i++)
        brg_msg_add_array(msg, 1);
    brg_msg_add_nil(msg);
    size_t pos = 0;
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_EBADMSG);
    ck_assert_uint_eq(pos, 0);
    ck_assert_int_eq(brg_msg_count(msg), BRG_EBADMSG);
    pos = 1;
    ck_assert_int_eq(brg_msg_skip(msg, &pos), BRG_OK);
    ck_assert_uint_eq(pos, brg_msg_size(msg));
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msgpack_validate_counts_top_level_values)
{
    ck_assert_int_eq(brg_msgpack_validate(NULL, 0), 0);
    ck_assert_int_eq(brg_msgpack_validate("\xc0", 1), 1);
    ck_assert_int_eq(brg_msgpack_validate("\x01\x02\x03", 3), 3);
    ck_assert_int_eq(brg_msgpack_validate("\x92\x01\x02\x03", 4), 2);
    ck_assert_int_eq(brg_msgpack_validate("\x81\xa1k\x90\xc3", 5), 2);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Sizes.

START_TEST(test_msg_payload_grows_from_inline_into_a_heap_buffer)
{
    // A fresh message: a recycled one may keep a heap buffer of an earlier use.
    brg__msg_pool_trim();
    brg_msg_t *msg = brg_msg_new("grow");
    ck_assert_ptr_eq(msg->data, msg->inline_data);
    for (int64_t i = 0; i < 1000; i++) {
        ck_assert_int_eq(brg_msg_add_int(msg, i * 1000), BRG_OK);
        if (brg_msg_size(msg) <= BRG__MSG_INLINE)
            ck_assert_ptr_eq(msg->data, msg->inline_data);
    }
    ck_assert_ptr_ne(msg->data, msg->inline_data);
    ck_assert_uint_ge(msg->cap, brg_msg_size(msg));
    ck_assert_int_eq(brg_msg_count(msg), 1000);
    size_t pos = 0;
    for (int64_t i = 0; i < 1000; i++) {
        int64_t value;
        ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_OK);
        ck_assert_int_eq(value, i * 1000);
    }
    brg_msg_destroy(&msg);
}
END_TEST

START_TEST(test_msg_builders_past_msg_max_return_emsgsize_and_leave_the_payload_unchanged)
{
    uint8_t *big = malloc(BRG_MSG_MAX + 1);
    ck_assert_ptr_nonnull(big);
    for (size_t i = 0; i <= BRG_MSG_MAX; i++)
        big[i] = (uint8_t)(i * 31);
    brg_msg_t *msg = brg_msg_new("big");
    ck_assert_int_eq(brg_msg_add_bin(msg, big, BRG_MSG_MAX), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_strn(msg, (char *)big, BRG_MSG_MAX + 1), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_raw(msg, big, BRG_MSG_MAX + 1), BRG_EMSGSIZE);
    ck_assert_uint_eq(brg_msg_size(msg), 0);

    // Exactly full: a bin32 header (5 bytes) plus the rest.
    ck_assert_int_eq(brg_msg_add_bin(msg, big, BRG_MSG_MAX - 5), BRG_OK);
    ck_assert_uint_eq(brg_msg_size(msg), BRG_MSG_MAX);
    ck_assert_int_eq(brg_msg_add_nil(msg), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_bool(msg, true), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_int(msg, 0), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_uint(msg, 0), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_double(msg, 0), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_str(msg, ""), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_bin(msg, NULL, 0), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_array(msg, 0), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_map(msg, 0), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_ref(msg, BRG_REF_NONE), BRG_EMSGSIZE);
    ck_assert_int_eq(brg_msg_add_raw(msg, "\xc0", 1), BRG_EMSGSIZE);
    ck_assert_uint_eq(brg_msg_size(msg), BRG_MSG_MAX);
    ck_assert_uint_eq(brg_msg_data(msg)[0], 0xc6);
    ck_assert(memcmp(brg_msg_data(msg) + 5, big, BRG_MSG_MAX - 5) == 0);
    ck_assert_int_eq(brg_msg_count(msg), 1);
    brg_msg_destroy(&msg);

    // Three bytes left: a 5-byte string's header fits, its body does not,
    // so the header written first must be rolled back.
    msg = brg_msg_new("big");
    ck_assert_int_eq(brg_msg_add_bin(msg, big, BRG_MSG_MAX - 8), BRG_OK);
    ck_assert_uint_eq(brg_msg_size(msg), BRG_MSG_MAX - 3);
    ck_assert_int_eq(brg_msg_add_strn(msg, "abcde", 5), BRG_EMSGSIZE);
    ck_assert_uint_eq(brg_msg_size(msg), BRG_MSG_MAX - 3);
    ck_assert_int_eq(brg_msg_count(msg), 1);
    ck_assert_int_eq(brg_msg_add_strn(msg, "ab", 2), BRG_OK);
    ck_assert_uint_eq(brg_msg_size(msg), BRG_MSG_MAX);
    ck_assert_int_eq(brg_msg_count(msg), 2);
    brg_msg_destroy(&msg);
    free(big);
}
END_TEST

START_TEST(test_msg_add_raw_appends_whole_values_and_rejects_malformed_bytes)
{
    brg_msg_t *msg = brg_msg_new("raw");
    brg_msg_add_int(msg, 1);
    ck_assert_int_eq(brg_msg_add_raw(msg, "\x92\x02\xa1x", 4), BRG_OK);
    ck_assert_int_eq(brg_msg_add_raw(msg, NULL, 0), BRG_OK);
    ck_assert_uint_eq(brg_msg_size(msg), 5);
    ck_assert_int_eq(brg_msg_add_raw(msg, "\xc1", 1), BRG_EBADMSG);
    ck_assert_int_eq(brg_msg_add_raw(msg, "\xcd\x01", 2), BRG_EBADMSG);
    ck_assert_int_eq(brg_msg_add_raw(msg, "\x92\x01", 2), BRG_EBADMSG);
    ck_assert_uint_eq(brg_msg_size(msg), 5);
    ck_assert_mem_eq(brg_msg_data(msg), "\x01\x92\x02\xa1x", 5);
    ck_assert_int_eq(brg_msg_count(msg), 2);
    brg_msg_destroy(&msg);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Lifecycle.

START_TEST(test_msg_new_int_and_new_str_build_one_value)
{
    brg_msg_t *msg = brg_msg_new_int("n", -7);
    ck_assert_int_eq(brg_msg_count(msg), 1);
    size_t pos = 0;
    int64_t value;
    ck_assert_int_eq(brg_msg_read_int(msg, &pos, &value), BRG_OK);
    ck_assert_int_eq(value, -7);
    brg_msg_destroy(&msg);

    msg = brg_msg_new_str("s", "hi");
    ck_assert(brg_msg_is(msg, "s"));
    char buf[8];
    pos = 0;
    ck_assert_int_eq(brg_msg_read_str_copy(msg, &pos, buf, sizeof buf), BRG_OK);
    ck_assert_str_eq(buf, "hi");
    brg_msg_destroy(&msg);

    ck_assert_ptr_null(brg_msg_new_int(NULL, 1));
    ck_assert_ptr_null(brg_msg_new_str("", "x"));
}
END_TEST

START_TEST(test_msg_dup_copies_tag_payload_sender_corr_kind_and_status)
{
    uint8_t bytes[5000];
    memset(bytes, 0x42, sizeof bytes);
    brg_msg_t *msg = brg_msg_new("orig");
    brg_msg_add_int(msg, 99);
    brg_msg_add_bin(msg, bytes, sizeof bytes);
    msg->sender = (brg_ref_t){1, 2, 3};
    msg->corr = 77;
    msg->kind = BRG__MSG_REPLY_ERROR;
    msg->status = BRG_ETIMEDOUT;

    brg_msg_t *copy = brg_msg_dup(msg);
    ck_assert_ptr_nonnull(copy);
    ck_assert_ptr_ne(copy, msg);
    ck_assert_ptr_ne(copy->data, msg->data);
    ck_assert_str_eq(brg_msg_tag(copy), "orig");
    ck_assert(brg_msg_is(copy, "orig"));
    ck_assert_uint_eq(brg_msg_tag_hash(copy), brg_msg_tag_hash(msg));
    ck_assert_uint_eq(brg_msg_size(copy), brg_msg_size(msg));
    ck_assert(memcmp(brg_msg_data(copy), brg_msg_data(msg), brg_msg_size(msg)) == 0);
    ck_assert(brg_ref_eq(brg_msg_sender(copy), ((brg_ref_t){1, 2, 3})));
    ck_assert_uint_eq(copy->corr, 77);
    ck_assert_uint_eq(copy->kind, BRG__MSG_REPLY_ERROR);
    ck_assert_int_eq(copy->status, BRG_ETIMEDOUT);

    // The copy is independent of the original.
    brg_msg_destroy(&msg);
    size_t pos = 0;
    int64_t value;
    ck_assert_int_eq(brg_msg_read_int(copy, &pos, &value), BRG_OK);
    ck_assert_int_eq(value, 99);
    ck_assert_int_eq(brg_msg_count(copy), 2);
    brg_msg_destroy(&copy);
}
END_TEST

START_TEST(test_msg_destroy_sets_the_pointer_to_null_and_accepts_null)
{
    brg_msg_t *msg = brg_msg_new("x");
    brg_msg_destroy(&msg);
    ck_assert_ptr_null(msg);
    brg_msg_destroy(&msg);
    ck_assert_ptr_null(msg);
}
END_TEST

START_TEST(test_msg_alloc_resets_every_field_of_a_reused_message)
{
    brg_msg_t *msg = brg__msg_alloc();
    ck_assert_int_eq(brg__msg_set_tag(msg, "used", 4), BRG_OK);
    brg_msg_add_str(msg, "payload");
    msg->sender = (brg_ref_t){4, 5, 6};
    msg->corr = 9;
    msg->kind = BRG__MSG_SYS_STOP;
    msg->status = -4;
    atomic_store(&msg->next, msg);
    brg__msg_free(msg);

    // The cache is LIFO: the same message comes back.
    brg_msg_t *again = brg__msg_alloc();
    ck_assert_ptr_eq(again, msg);
    ck_assert_ptr_null(atomic_load(&again->next));
    ck_assert(brg_ref_is_none(again->sender));
    ck_assert_uint_eq(again->corr, 0);
    ck_assert_uint_eq(again->kind, BRG__MSG_USER);
    ck_assert_int_eq(again->status, 0);
    ck_assert_uint_eq(again->size, 0);
    ck_assert_uint_eq(again->tag_len, 0);
    ck_assert_str_eq(again->tag, "");
    ck_assert_uint_eq(again->tag_hash, brg_tag_hash(""));
    ck_assert_uint_eq(again->reserved, 0);
    brg__msg_free(again);
}
END_TEST

START_TEST(test_msg_block_is_raw_memory_from_the_free_lists_and_becomes_a_message_again)
{
    static uint8_t bytes[1000];
    // A recycled message with a kept heap buffer: the block must not leak it.
    brg_msg_t *msg = brg_msg_new("kept");
    brg_msg_add_bin(msg, bytes, sizeof bytes);
    ck_assert_ptr_ne(msg->data, msg->inline_data);
    brg_msg_destroy(&msg);
    void *block = brg__msg_block_alloc();
    ck_assert_ptr_nonnull(block);
    memset(block, 0xa5, BRG__MSG_BLOCK); // every byte is the caller's
    brg__msg_block_free(block);
    // It comes back as a clean message (LIFO cache) that takes a payload.
    msg = brg__msg_alloc();
    ck_assert_ptr_eq(msg, block);
    ck_assert_ptr_eq(msg->data, msg->inline_data);
    ck_assert_uint_eq(msg->cap, BRG__MSG_INLINE);
    ck_assert_int_eq(brg_msg_add_bin(msg, bytes, sizeof bytes), BRG_OK);
    ck_assert_uint_eq(msg->size, 1000 + 3);
    brg__msg_free(msg);
}
END_TEST

START_TEST(test_msg_free_drops_a_heap_buffer_over_4_kib_and_keeps_a_smaller_one)
{
    static uint8_t bytes[10000];
    brg_msg_t *msg = brg_msg_new("large");
    brg_msg_add_bin(msg, bytes, sizeof bytes);
    ck_assert_uint_gt(msg->cap, 4096);
    brg_msg_destroy(&msg);
    msg = brg__msg_alloc();
    ck_assert_ptr_eq(msg->data, msg->inline_data);
    ck_assert_uint_eq(msg->cap, BRG__MSG_INLINE);

    brg_msg_add_bin(msg, bytes, 1000);
    uint8_t *buffer = msg->data;
    ck_assert_ptr_ne(buffer, msg->inline_data);
    brg__msg_free(msg);
    msg = brg__msg_alloc();
    ck_assert_ptr_eq(msg->data, buffer);
    ck_assert_uint_ge(msg->cap, 1000);
    ck_assert_uint_eq(msg->size, 0);
    brg__msg_free(msg);
}
END_TEST

START_TEST(test_msg_pool_trim_frees_the_caches_and_allocation_still_works)
{
    brg_msg_t *msgs[600];
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 600; i++) {
            msgs[i] = brg_msg_new_int("t", i);
            ck_assert_ptr_nonnull(msgs[i]);
        }
        for (int i = 0; i < 600; i++)
            brg_msg_destroy(&msgs[i]);
        brg__msg_pool_trim();
    }
}
END_TEST

//  ---------------------------------------------------------------------------
//  Free lists across threads.

#define S_HANDOFF 300

typedef struct {
    brg_msg_t *msgs[S_HANDOFF];
    pthread_barrier_t freed;   // the thread has freed every message
    pthread_barrier_t checked; // the main thread has allocated again
    bool stay_alive;           // wait for `checked` before exiting
} s_handoff_t;

static void *
s_free_all(void *arg)
{
    s_handoff_t *handoff = arg;
    for (int i = 0; i < S_HANDOFF; i++)
        brg__msg_free(handoff->msgs[i]);
    if (handoff->stay_alive) {
        pthread_barrier_wait(&handoff->freed);
        pthread_barrier_wait(&handoff->checked);
    }
    return NULL;
}

static bool
s_in(brg_msg_t *const *msgs, size_t n, const brg_msg_t *msg)
{
    for (size_t i = 0; i < n; i++)
        if (msgs[i] == msg)
            return true;
    return false;
}

START_TEST(test_msg_messages_freed_on_another_thread_return_in_batches)
{
    s_handoff_t handoff = {.stay_alive = true};
    pthread_barrier_init(&handoff.freed, NULL, 2);
    pthread_barrier_init(&handoff.checked, NULL, 2);
    brg__msg_pool_trim();
    for (int i = 0; i < S_HANDOFF; i++)
        handoff.msgs[i] = brg__msg_alloc();

    // The other thread frees 300 while it lives: it keeps two batches of 128
    // at most, so at least one full batch reaches the shared pool.
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, s_free_all, &handoff), 0);
    pthread_barrier_wait(&handoff.freed);
    brg_msg_t *again[128];
    for (int i = 0; i < 128; i++) {
        again[i] = brg__msg_alloc();
        ck_assert(s_in(handoff.msgs, S_HANDOFF, again[i]));
    }
    pthread_barrier_wait(&handoff.checked);
    pthread_join(thread, NULL);
    for (int i = 0; i < 128; i++)
        brg__msg_free(again[i]);
    pthread_barrier_destroy(&handoff.freed);
    pthread_barrier_destroy(&handoff.checked);
}
END_TEST

START_TEST(test_msg_thread_exit_returns_its_cache_to_the_shared_pool)
{
    s_handoff_t handoff = {.stay_alive = false};
    brg__msg_pool_trim();
    for (int i = 0; i < S_HANDOFF; i++)
        handoff.msgs[i] = brg__msg_alloc();
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, s_free_all, &handoff), 0);
    pthread_join(thread, NULL);

    // Everything the exited thread cached is in the pool, so every one of the
    // 300 comes back (and none leaks: LSan and valgrind check that too).
    brg_msg_t *again[S_HANDOFF];
    for (int i = 0; i < S_HANDOFF; i++) {
        again[i] = brg__msg_alloc();
        ck_assert(s_in(handoff.msgs, S_HANDOFF, again[i]));
    }
    for (int i = 0; i < S_HANDOFF; i++)
        brg__msg_free(again[i]);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Fuzz: random and mutated bytes through the validator and the readers.

static uint64_t
s_rand(uint64_t *state)
{
    // xorshift64*: fixed seed, so a failure reproduces.
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return *state * 2685821657736338717u;
}

//  Read every value of a valid payload with the typed reader peek names
//  (entering containers), checking each succeeds, then skip value by value.
static void
s_read_all(const brg_msg_t *msg, int count)
{
    size_t pos = 0;
    int64_t i;
    uint64_t u;
    double d;
    bool b;
    const char *str;
    const void *data;
    size_t len;
    uint32_t n;
    brg_ref_t ref;
    brg_type_t type;
    while ((type = brg_msg_peek(msg, pos)) != BRG_TYPE_NONE) {
        size_t before = pos;
        int rc = BRG_OK;
        switch (type) {
        case BRG_TYPE_NIL:
            rc = brg_msg_read_nil(msg, &pos);
            break;
        case BRG_TYPE_BOOL:
            rc = brg_msg_read_bool(msg, &pos, &b);
            break;
        case BRG_TYPE_INT:
            rc = brg_msg_read_int(msg, &pos, &i);
            if (rc == BRG_ERANGE)
                rc = brg_msg_read_uint(msg, &pos, &u);
            break;
        case BRG_TYPE_FLOAT:
            rc = brg_msg_read_double(msg, &pos, &d);
            break;
        case BRG_TYPE_STR:
            rc = brg_msg_read_str(msg, &pos, &str, &len);
            break;
        case BRG_TYPE_BIN:
            rc = brg_msg_read_bin(msg, &pos, &data, &len);
            break;
        case BRG_TYPE_ARRAY:
            rc = brg_msg_read_array(msg, &pos, &n);
            break;
        case BRG_TYPE_MAP:
            rc = brg_msg_read_map(msg, &pos, &n);
            break;
        case BRG_TYPE_EXT:
            rc = brg_msg_read_ref(msg, &pos, &ref);
            if (rc == BRG_ETYPE)
                rc = brg_msg_skip(msg, &pos);
            break;
        default:
            ck_abort_msg("value of type %d at %zu of a valid payload", (int)type, pos);
        }
        S_CHECK(rc == BRG_OK);
        S_CHECK(pos > before);
        S_CHECK(pos <= brg_msg_size(msg));
    }
    S_CHECK(pos == brg_msg_size(msg));

    pos = 0;
    for (int k = 0; k < count; k++)
        S_CHECK(brg_msg_skip(msg, &pos) == BRG_OK);
    S_CHECK(pos == brg_msg_size(msg));
    S_CHECK(brg_msg_skip(msg, &pos) == BRG_ENODATA);
}

//  Walk a payload that failed validation: skipping must hit BRG_EBADMSG, and
//  no reader may crash or leave the payload.
static void
s_read_invalid(const brg_msg_t *msg)
{
    size_t pos = 0;
    int rc;
    while ((rc = brg_msg_skip(msg, &pos)) == BRG_OK)
        S_CHECK(pos <= brg_msg_size(msg));
    S_CHECK(rc == BRG_EBADMSG);
    for (int which = 0; which < S_READERS; which++) {
        size_t at = pos;
        (void)s_read_with(msg, which, &at);
        S_CHECK(at <= brg_msg_size(msg));
    }
}

START_TEST(test_msgpack_validate_and_readers_survive_100000_random_and_mutated_inputs)
{
    // Seeds: valid payloads with every format; nested is ten maps deep,
    // {"a": [i, i / 3.0, bin], -1000 i: {...}}, then eleven more values.
    size_t bounds[32], nbounds;
    brg_msg_t *sample = s_sample_msg(bounds, &nbounds);
    brg_msg_t *nested = brg_msg_new("nested");
    for (int i = 0; i < 10; i++) {
        brg_msg_add_map(nested, 2);
        brg_msg_add_str(nested, "a");
        brg_msg_add_array(nested, 3);
        brg_msg_add_int(nested, i);
        brg_msg_add_double(nested, i / 3.0);
        brg_msg_add_bin(nested, "xyz", 3);
        brg_msg_add_int(nested, -i * 1000);
    }
    brg_msg_add_nil(nested);
    brg_msg_add_nil(nested);
    for (int i = 0; i < 10; i++)
        brg_msg_add_int(nested, i);
    const brg_msg_t *seeds[] = {sample, nested};
    ck_assert_int_gt(brg_msg_count(nested), 0);

    // Bytes a random input draws from: every format byte, and small numbers.
    static const uint8_t interesting[] = {
        0x00, 0x01, 0x7f, 0x80, 0x81, 0x8f, 0x90, 0x91, 0x9f, 0xa0, 0xa1, 0xbf,
        0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb,
        0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7,
        0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xe0, 0xff, 0x02, 0x03};
    uint64_t state = 0x9e3779b97f4a7c15u;
    brg_msg_t *view = brg_msg_new("view");
    uint8_t buf[2048];
    int valid = 0;
    for (int iter = 0; iter < 100000; iter++) {
        size_t len = 0;
        uint64_t mode = s_rand(&state) % 4;
        if (mode == 0) {
            len = s_rand(&state) % 48;
            for (size_t i = 0; i < len; i++) {
                uint64_t r = s_rand(&state);
                buf[i] = r & 1 ? interesting[(r >> 1) % sizeof interesting] : (uint8_t)(r >> 8);
            }
        } else {
            const brg_msg_t *seed = seeds[s_rand(&state) % 2];
            len = brg_msg_size(seed) < sizeof buf ? brg_msg_size(seed) : sizeof buf;
            size_t start = mode == 3 ? s_rand(&state) % (len + 1) : 0;
            memcpy(buf, brg_msg_data(seed) + start, len - start);
            len -= start;
            int mutations = 1 + (int)(s_rand(&state) % 4);
            for (int m = 0; m < mutations && len > 0; m++) {
                uint64_t r = s_rand(&state);
                size_t at = (r >> 8) % len;
                switch (r % 4) {
                case 0:
                    buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8));
                    break;
                case 1:
                    buf[at] = interesting[(r >> 40) % sizeof interesting];
                    break;
                case 2:
                    len = at; // truncate
                    break;
                default:
                    buf[at] = (uint8_t)(r >> 40);
                    break;
                }
            }
        }
        uint8_t *copy = s_exact_copy(buf, len);
        int count = brg_msgpack_validate(copy, len);
        S_CHECK(count >= 0 || count == BRG_EBADMSG);
        s_saved_payload_t saved = s_payload_borrow(view, copy, len);
        if (count >= 0) {
            valid++;
            S_CHECK(brg_msg_count(view) == count);
            s_read_all(view, count);
            // add_raw accepts exactly what validate accepts.
            brg_msg_t *msg = brg_msg_new("fuzz");
            S_CHECK(brg_msg_add_raw(msg, copy, len) == BRG_OK);
            S_CHECK(brg_msg_count(msg) == count);
            brg_msg_destroy(&msg);
        } else {
            s_read_invalid(view);
            brg_msg_t *msg = brg_msg_new("fuzz");
            brg_msg_add_nil(msg);
            S_CHECK(brg_msg_add_raw(msg, copy, len) == BRG_EBADMSG);
            S_CHECK(brg_msg_size(msg) == 1);
            brg_msg_destroy(&msg);
        }
        s_payload_return(view, saved);
        free(copy);
    }
    // Both branches ran a meaningful number of times.
    ck_assert_int_gt(valid, 1000);
    ck_assert_int_lt(valid, 99000);
    brg_msg_destroy(&view);
    brg_msg_destroy(&nested);
    brg_msg_destroy(&sample);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Stress: producers allocate, one consumer frees.

#define S_PRODUCERS 4
#define S_PER_PRODUCER 250000
#define S_QUEUE_CAP 4096

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t not_empty;
    pthread_cond_t not_full;
    brg_msg_t *ring[S_QUEUE_CAP];
    size_t head;  // next slot to pop
    size_t count; // messages queued
} s_queue_t;

typedef struct {
    s_queue_t *queue;
    int id;
    int failures; // messages this producer could not build
} s_producer_t;

static void
s_queue_push(s_queue_t *queue, brg_msg_t *msg)
{
    pthread_mutex_lock(&queue->lock);
    while (queue->count == S_QUEUE_CAP)
        pthread_cond_wait(&queue->not_full, &queue->lock);
    queue->ring[(queue->head + queue->count) % S_QUEUE_CAP] = msg;
    if (queue->count++ == 0)
        pthread_cond_signal(&queue->not_empty);
    pthread_mutex_unlock(&queue->lock);
}

//  Take every queued message (at least one) into out; returns how many.
static size_t
s_queue_pop_all(s_queue_t *queue, brg_msg_t **out)
{
    pthread_mutex_lock(&queue->lock);
    while (queue->count == 0)
        pthread_cond_wait(&queue->not_empty, &queue->lock);
    size_t n = queue->count;
    for (size_t i = 0; i < n; i++)
        out[i] = queue->ring[(queue->head + i) % S_QUEUE_CAP];
    queue->head = (queue->head + n) % S_QUEUE_CAP;
    queue->count = 0;
    pthread_cond_broadcast(&queue->not_full);
    pthread_mutex_unlock(&queue->lock);
    return n;
}

//  The stress loops count problems and assert once at the end: each Check
//  assertion writes to the runner's pipe, which would dominate the run.
static void *
s_producer(void *arg)
{
    s_producer_t *producer = arg;
    for (int64_t seq = 0; seq < S_PER_PRODUCER; seq++) {
        brg_msg_t *msg = brg_msg_new("work");
        if (!msg || brg_msg_add_int(msg, producer->id) < 0 || brg_msg_add_int(msg, seq) < 0) {
            producer->failures++;
            brg_msg_destroy(&msg);
            continue;
        }
        s_queue_push(producer->queue, msg);
    }
    return NULL;
}

START_TEST(test_msg_stress_4_producers_allocate_and_1_consumer_frees_1000000_messages)
{
    static s_queue_t queue = {
        .lock = PTHREAD_MUTEX_INITIALIZER,
        .not_empty = PTHREAD_COND_INITIALIZER,
        .not_full = PTHREAD_COND_INITIALIZER,
    };
    s_producer_t producers[S_PRODUCERS];
    pthread_t threads[S_PRODUCERS];
    for (int i = 0; i < S_PRODUCERS; i++) {
        producers[i] = (s_producer_t){&queue, i, 0};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, s_producer, &producers[i]), 0);
    }
    // The consumer is this thread: it frees every message it receives.
    static brg_msg_t *batch[S_QUEUE_CAP];
    int64_t next_seq[S_PRODUCERS] = {0};
    size_t received = 0, bad = 0;
    while (received < (size_t)S_PRODUCERS * S_PER_PRODUCER) {
        size_t n = s_queue_pop_all(&queue, batch);
        for (size_t i = 0; i < n; i++) {
            size_t pos = 0;
            int64_t id = -1, seq = -1;
            if (!brg_msg_is(batch[i], "work") || brg_msg_read_int(batch[i], &pos, &id) < 0 ||
                brg_msg_read_int(batch[i], &pos, &seq) < 0 || id < 0 || id >= S_PRODUCERS) {
                bad++;
            } else if (seq != next_seq[id]) {
                bad++; // lost, duplicated or reordered
                next_seq[id] = seq + 1;
            } else {
                next_seq[id]++;
            }
            brg_msg_destroy(&batch[i]);
        }
        received += n;
    }
    for (int i = 0; i < S_PRODUCERS; i++)
        pthread_join(threads[i], NULL);
    // Nothing lost, nothing duplicated, order kept per producer.
    ck_assert_uint_eq(bad, 0);
    for (int i = 0; i < S_PRODUCERS; i++) {
        ck_assert_int_eq(producers[i].failures, 0);
        ck_assert_int_eq(next_seq[i], S_PER_PRODUCER);
    }
    ck_assert_uint_eq(received, (size_t)S_PRODUCERS * S_PER_PRODUCER);
}
END_TEST

//  ---------------------------------------------------------------------------

static Suite *
msg_suite(void)
{
    Suite *s = suite_create("msg");

    TCase *core = tcase_create("core");
    tcase_set_timeout(core, 60);
    tcase_add_test(core, test_msg_new_rejects_null_empty_and_too_long_tags);
    tcase_add_test(core, test_msg_new_has_the_tag_and_an_empty_payload);
    tcase_add_test(core, test_tag_hash_is_32_bit_fnv1a);
    tcase_add_test(core, test_msg_is_matches_only_the_same_tag);
    tcase_add_test(core, test_msg_is_tag_matches_only_the_same_tag);
    tcase_add_test(core, test_msg_tag_cache_is_shared_safely_by_threads);
    tcase_add_test(core, test_msg_set_tag_rejects_empty_and_too_long_tags_and_keeps_the_old_one);
    tcase_add_test(core, test_msg_int_round_trips_at_every_encoding_boundary);
    tcase_add_test(core, test_msg_uint_round_trips_up_to_uint64_max);
    tcase_add_test(core,
                   test_msg_read_int_of_a_uint_above_int64_max_returns_erange_and_keeps_the_cursor);
    tcase_add_test(core, test_msg_double_round_trips_and_read_double_accepts_ints);
    tcase_add_test(core, test_msg_nil_and_bool_round_trip);
    tcase_add_test(core, test_msg_str_round_trips_at_the_str8_str16_str32_boundaries);
    tcase_add_test(core, test_msg_str_keeps_embedded_nuls_and_str_copy_checks_the_room);
    tcase_add_test(core, test_msg_bin_round_trips_at_the_bin8_bin16_bin32_boundaries);
    tcase_add_test(core, test_msg_nested_arrays_and_maps_round_trip_and_skip_as_one_value);
    tcase_add_test(core, test_msg_ref_round_trips_as_ext_type_1_big_endian);
    tcase_add_test(core, test_msg_read_ref_of_another_ext_returns_etype);
    tcase_add_test(core, test_msg_read_of_another_type_returns_etype_and_keeps_the_cursor);
    tcase_add_test(core, test_msg_read_int_of_a_string_returns_etype);
    tcase_add_test(core, test_msg_every_reader_returns_enodata_at_the_end);
    tcase_add_test(core, test_msgpack_validate_rejects_every_truncation_of_a_valid_payload);
    tcase_add_test(core, test_msg_readers_return_ebadmsg_on_a_truncated_payload);
    tcase_add_test(core, test_msgpack_validate_rejects_hostile_lengths_at_once);
    tcase_add_test(core, test_msgpack_validate_accepts_depth_64_and_rejects_depth_65);
    tcase_add_test(core, test_msgpack_validate_counts_top_level_values);
    tcase_add_test(core, test_msg_payload_grows_from_inline_into_a_heap_buffer);
    tcase_add_test(core,
                   test_msg_builders_past_msg_max_return_emsgsize_and_leave_the_payload_unchanged);
    tcase_add_test(core, test_msg_add_raw_appends_whole_values_and_rejects_malformed_bytes);
    tcase_add_test(core, test_msg_new_int_and_new_str_build_one_value);
    tcase_add_test(core, test_msg_dup_copies_tag_payload_sender_corr_kind_and_status);
    tcase_add_test(core, test_msg_destroy_sets_the_pointer_to_null_and_accepts_null);
    tcase_add_test(core, test_msg_alloc_resets_every_field_of_a_reused_message);
    tcase_add_test(core, test_msg_free_drops_a_heap_buffer_over_4_kib_and_keeps_a_smaller_one);
    tcase_add_test(core, test_msg_pool_trim_frees_the_caches_and_allocation_still_works);
    tcase_add_test(core,
                   test_msg_block_is_raw_memory_from_the_free_lists_and_becomes_a_message_again);
    tcase_add_test(core, test_msg_messages_freed_on_another_thread_return_in_batches);
    tcase_add_test(core, test_msg_thread_exit_returns_its_cache_to_the_shared_pool);
    suite_add_tcase(s, core);

    TCase *fuzz = tcase_create("fuzz");
    tcase_set_timeout(fuzz, 120);
    tcase_add_test(fuzz,
                   test_msgpack_validate_and_readers_survive_100000_random_and_mutated_inputs);
    suite_add_tcase(s, fuzz);

    TCase *stress = tcase_create("stress");
    tcase_set_tags(stress, "stress"); // CK_EXCLUDE_TAGS=stress for a quick local run
    tcase_set_timeout(stress, 120);
    tcase_add_test(stress,
                   test_msg_stress_4_producers_allocate_and_1_consumer_frees_1000000_messages);
    suite_add_tcase(s, stress);
    return s;
}

int
main(void)
{
    SRunner *runner = srunner_create(msg_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failures = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failures != 0;
}
