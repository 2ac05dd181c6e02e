//  tools - the calculator and the document search of the agent example.
#include "tools.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  ---------------------------------------------------------------------------
//  Calculator: a recursive-descent parser.
//    expr   := term (('+' | '-') term)*
//    term   := unary (('*' | '/') unary)*
//    unary  := ('-' | '+') unary | primary
//    primary:= number | '(' expr ')'

#define CALC_DEPTH_MAX 64
#define CALC_LEN_MAX 1000

typedef struct {
    const char *s;
    size_t pos;
    int depth;
    char *err;
    size_t err_len;
    bool failed;
} calc_t;

static void
calc_fail(calc_t *c, const char *what)
{
    if (c->failed)
        return;
    c->failed = true;
    char ch = c->s[c->pos];
    if (what)
        snprintf(c->err, c->err_len, "%s", what);
    else if (ch == '\0')
        snprintf(c->err, c->err_len, "unexpected end of expression");
    else if (isprint((unsigned char)ch))
        snprintf(c->err, c->err_len, "unexpected '%c' at position %zu", ch, c->pos + 1);
    else
        snprintf(c->err, c->err_len, "unexpected byte 0x%02x at position %zu", (unsigned char)ch,
                 c->pos + 1);
}

static void
calc_space(calc_t *c)
{
    while (c->s[c->pos] == ' ' || c->s[c->pos] == '\t' || c->s[c->pos] == '\n')
        c->pos++;
}

static double calc_expr(calc_t *c);

static double
calc_number(calc_t *c)
{
    size_t start = c->pos;
    bool digits = false;
    while (isdigit((unsigned char)c->s[c->pos])) {
        c->pos++;
        digits = true;
    }
    if (c->s[c->pos] == '.') {
        c->pos++;
        while (isdigit((unsigned char)c->s[c->pos])) {
            c->pos++;
            digits = true;
        }
    }
    if (!digits) {
        c->pos = start;
        calc_fail(c, NULL);
        return 0;
    }
    char buf[128];
    size_t n = c->pos - start;
    if (n >= sizeof(buf)) {
        c->pos = start;
        calc_fail(c, "number too long");
        return 0;
    }
    memcpy(buf, c->s + start, n);
    buf[n] = '\0';
    return strtod(buf, NULL); // only digits and one '.': always a number
}

static double
calc_unary(calc_t *c)
{
    calc_space(c);
    if (++c->depth > CALC_DEPTH_MAX) {
        calc_fail(c, "expression nested too deeply");
        return 0;
    }
    double v;
    char ch = c->s[c->pos];
    if (ch == '-' || ch == '+') {
        c->pos++;
        v = calc_unary(c);
        if (ch == '-')
            v = -v;
    } else if (ch == '(') {
        c->pos++;
        v = calc_expr(c);
        calc_space(c);
        if (c->failed)
            ;
        else if (c->s[c->pos] == ')')
            c->pos++;
        else if (c->s[c->pos] == '\0')
            calc_fail(c, "missing ')'");
        else
            calc_fail(c, NULL);
    } else {
        v = calc_number(c);
    }
    c->depth--;
    return v;
}

static double
calc_term(calc_t *c)
{
    double v = calc_unary(c);
    for (;;) {
        calc_space(c);
        char op = c->s[c->pos];
        if (c->failed || (op != '*' && op != '/'))
            return v;
        c->pos++;
        size_t at = c->pos;
        double r = calc_unary(c);
        if (c->failed)
            return 0;
        if (op == '/' && r == 0) {
            c->pos = at;
            calc_fail(c, "division by zero");
            return 0;
        }
        v = op == '*' ? v * r : v / r;
    }
}

static double
calc_expr(calc_t *c)
{
    double v = calc_term(c);
    for (;;) {
        calc_space(c);
        char op = c->s[c->pos];
        if (c->failed || (op != '+' && op != '-'))
            return v;
        c->pos++;
        double r = calc_term(c);
        v = op == '+' ? v + r : v - r;
    }
}

int
calc_eval(const char *expr, double *out, char *err, size_t err_len)
{
    calc_t c = {expr, 0, 0, err, err_len, false};
    if (strlen(expr) > CALC_LEN_MAX) {
        snprintf(err, err_len, "expression longer than %d bytes", CALC_LEN_MAX);
        return -1;
    }
    calc_space(&c);
    if (expr[c.pos] == '\0') {
        snprintf(err, err_len, "empty expression");
        return -1;
    }
    double v = calc_expr(&c);
    calc_space(&c);
    if (!c.failed && expr[c.pos] != '\0')
        calc_fail(&c, NULL);
    if (!c.failed && !isfinite(v))
        calc_fail(&c, "result out of range");
    if (c.failed)
        return -1;
    *out = v;
    return 0;
}

void
calc_format(double value, char *buf, size_t len)
{
    if (value == 0)
        value = 0; // no "-0"
    snprintf(buf, len, "%.12g", value);
}

const char *const calc_tool_schema =
    "{\"type\":\"object\",\"properties\":{\"expression\":{\"type\":\"string\","
    "\"description\":\"an arithmetic expression: numbers, + - * /, parentheses, e.g. "
    "(12.5 + 7) * 3\"}},\"required\":[\"expression\"]}";

void
calc_tool(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
{
    (void)arg;
    char expr[CALC_LEN_MAX + 1], err[128], num[64];
    int rc = brg_tool_arg_str(call, "expression", expr, sizeof(expr));
    if (rc == BRG_EMSGSIZE) {
        brg_tool_errorf(out, "error: expression longer than %d bytes", CALC_LEN_MAX);
        return;
    }
    if (rc != BRG_OK) {
        brg_tool_errorf(out, "error: the argument 'expression' (a string) is missing");
        return;
    }
    double v;
    if (calc_eval(expr, &v, err, sizeof(err)) != 0) {
        brg_tool_errorf(out, "error: %s in \"%s\"", err, expr);
        return;
    }
    calc_format(v, num, sizeof(num));
    brg_tool_printf(out, "%s = %s", expr, num);
}

//  ---------------------------------------------------------------------------
//  Document search

typedef struct {
    char *file;  // its name in the folder
    char *title; // the first line
    char *text;  // the whole file, NUL-terminated
    size_t len;
} doc_t;

struct docs {
    doc_t *v;
    size_t n;
};

static const char *const stop_words[] = {
    "the",  "and",  "for",    "are",      "was",       "were",  "with", "that",  "this",
    "from", "what", "which",  "who",      "how",       "does",  "did",  "has",   "have",
    "had",  "you",  "your",   "our",      "can",       "about", "into", "there", "their",
    "they", "them", "any",    "all",      "not",       "but",   "its",  "say",   "says",
    "tell", "find", "search", "document", "documents", "docs",
};

static bool
is_stop(const char *w)
{
    for (size_t i = 0; i < sizeof(stop_words) / sizeof(stop_words[0]); i++)
        if (strcmp(w, stop_words[i]) == 0)
            return true;
    return false;
}

static bool
word_byte(unsigned char c)
{
    return isalnum(c) || c >= 0x80;
}

//  Next word of s from *pos, lowercased into w (cut at wlen - 1). False at
//  the end.
static bool
next_word(const char *s, size_t *pos, char *w, size_t wlen)
{
    size_t i = *pos;
    while (s[i] && !word_byte((unsigned char)s[i]))
        i++;
    if (!s[i])
        return false;
    size_t n = 0;
    while (word_byte((unsigned char)s[i])) {
        if (n + 1 < wlen)
            w[n++] = (char)tolower((unsigned char)s[i]);
        i++;
    }
    w[n] = '\0';
    *pos = i;
    return true;
}

static size_t
count_word(const char *s, size_t end, const char *word)
{
    char w[64];
    size_t pos = 0, n = 0;
    while (pos < end && next_word(s, &pos, w, sizeof(w)))
        if (pos <= end && strcmp(w, word) == 0)
            n++;
    return n;
}

static int
cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *
read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096)
            break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

void
docs_free(docs_t *docs)
{
    if (!docs)
        return;
    for (size_t i = 0; i < docs->n; i++) {
        free(docs->v[i].file);
        free(docs->v[i].title);
        free(docs->v[i].text);
    }
    free(docs->v);
    free(docs);
}

docs_t *
docs_load(const char *dir, char *err, size_t err_len)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, err_len, "cannot open %s: %s", dir, strerror(errno));
        return NULL;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    bool oom = false;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".txt") != 0 || e->d_name[0] == '.')
            continue;
        char **v = realloc(names, (n + 1) * sizeof(*v));
        if (!v || !(v[n] = strdup(e->d_name))) {
            names = v ? v : names;
            oom = true;
            break;
        }
        names = v;
        n++;
    }
    closedir(d);
    docs_t *docs = calloc(1, sizeof(*docs));
    if (oom || !docs || (n && !(docs->v = calloc(n, sizeof(doc_t))))) {
        snprintf(err, err_len, "out of memory");
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        docs_free(docs);
        return NULL;
    }
    qsort(names, n, sizeof(*names), cmp_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        doc_t *doc = &docs->v[docs->n];
        doc->file = names[i];
        names[i] = NULL;
        doc->text = read_file(path, &doc->len);
        docs->n++;
        if (!doc->text) {
            snprintf(err, err_len, "cannot read %s", path);
            for (size_t k = i + 1; k < n; k++)
                free(names[k]);
            free(names);
            docs_free(docs);
            return NULL;
        }
        size_t t = strcspn(doc->text, "\r\n");
        doc->title = strndup(doc->text, t);
        if (!doc->title) {
            snprintf(err, err_len, "out of memory");
            for (size_t k = i + 1; k < n; k++)
                free(names[k]);
            free(names);
            docs_free(docs);
            return NULL;
        }
    }
    free(names);
    if (docs->n == 0) {
        snprintf(err, err_len, "no .txt document in %s", dir);
        docs_free(docs);
        return NULL;
    }
    return docs;
}

#define QUERY_WORDS_MAX 16

typedef struct {
    size_t doc;
    double score;
} hit_t;

static int
cmp_hits(const void *a, const void *b)
{
    const hit_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

//  The first sentence of doc (after the title) holding one of the words.
static void
snippet(const doc_t *doc, char words[][64], size_t nw, char *out, size_t len)
{
    brg_text_span_t spans[256];
    int n = brg_text_sentences(doc->text, doc->len, spans, 256);
    if (n > 256)
        n = 256;
    int pick = n > 1 ? 1 : 0;
    for (int i = 1; i < n; i++) {
        char w[64];
        size_t pos = 0;
        char sentence[1024];
        size_t l = spans[i].length < sizeof(sentence) - 1 ? spans[i].length : sizeof(sentence) - 1;
        memcpy(sentence, doc->text + spans[i].offset, l);
        sentence[l] = '\0';
        bool found = false;
        while (!found && next_word(sentence, &pos, w, sizeof(w)))
            for (size_t k = 0; k < nw && !found; k++)
                found = strcmp(w, words[k]) == 0;
        if (found) {
            pick = i;
            break;
        }
    }
    if (n <= 0) {
        snprintf(out, len, "%s", "");
        return;
    }
    size_t l = spans[pick].length;
    if (l > 160) {
        // cut at a space, never inside a UTF-8 character
        l = 160;
        while (l > 0 && doc->text[spans[pick].offset + l] != ' ')
            l--;
        snprintf(out, len, "%.*s ...", (int)l, doc->text + spans[pick].offset);
    } else {
        snprintf(out, len, "%.*s", (int)l, doc->text + spans[pick].offset);
    }
}

int
docs_search(const docs_t *docs, const char *query, int max, char *buf, size_t len)
{
    char words[QUERY_WORDS_MAX][64];
    size_t nw = 0, pos = 0;
    char w[64];
    while (nw < QUERY_WORDS_MAX && next_word(query, &pos, w, sizeof(w))) {
        if (strlen(w) < 3 || is_stop(w))
            continue;
        bool dup = false;
        for (size_t k = 0; k < nw; k++)
            dup = dup || strcmp(words[k], w) == 0;
        if (!dup)
            memcpy(words[nw++], w, sizeof(w));
    }
    if (nw == 0)
        return -1;
    hit_t *hits = calloc(docs->n, sizeof(*hits));
    if (!hits)
        return -1;
    for (size_t k = 0; k < nw; k++) {
        size_t df = 0;
        for (size_t i = 0; i < docs->n; i++)
            df += count_word(docs->v[i].text, docs->v[i].len, words[k]) > 0;
        if (df == 0)
            continue;
        double idf = log(1.0 + (double)docs->n / (double)df);
        for (size_t i = 0; i < docs->n; i++) {
            const doc_t *d = &docs->v[i];
            size_t in_title = count_word(d->title, strlen(d->title), words[k]);
            size_t all = count_word(d->text, d->len, words[k]);
            hits[i].score += (double)(all + in_title) * idf; // the title counts twice
        }
    }
    for (size_t i = 0; i < docs->n; i++)
        hits[i].doc = i;
    qsort(hits, docs->n, sizeof(*hits), cmp_hits);
    int matched = 0;
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < docs->n && hits[i].score > 0; i++) {
        matched++;
        if (matched > max)
            continue;
        const doc_t *d = &docs->v[hits[i].doc];
        char snip[200];
        snippet(d, words, nw, snip, sizeof(snip));
        int r = snprintf(buf + used, len - used, "%s%d. %s (%s, score %.2f): %s", used ? "\n" : "",
                         matched, d->title, d->file, hits[i].score, snip);
        if (r < 0 || (size_t)r >= len - used)
            break;
        used += (size_t)r;
    }
    free(hits);
    return matched;
}

const char *const search_tool_schema =
    "{\"type\":\"object\",\"properties\":{\"query\":{\"type\":\"string\","
    "\"description\":\"words to look for in the documents\"},\"max_results\":{\"type\":"
    "\"integer\",\"description\":\"how many documents to return (1-5, default 3)\"}},"
    "\"required\":[\"query\"]}";

void
search_tool(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out)
{
    const docs_t *docs = arg;
    char query[512];
    double max = 3;
    int rc = brg_tool_arg_str(call, "query", query, sizeof(query));
    if (rc == BRG_EMSGSIZE) {
        brg_tool_errorf(out, "error: the query is longer than %zu bytes", sizeof(query) - 1);
        return;
    }
    if (rc != BRG_OK) {
        brg_tool_errorf(out, "error: the argument 'query' (a string) is missing");
        return;
    }
    rc = brg_tool_arg_double(call, "max_results", &max);
    if (rc == BRG_ETYPE || (rc == BRG_OK && (max < 1 || max > 5 || max != floor(max)))) {
        brg_tool_errorf(out, "error: max_results must be a whole number from 1 to 5");
        return;
    }
    char result[4096];
    int n = docs_search(docs, query, (int)max, result, sizeof(result));
    if (n < 0)
        brg_tool_errorf(out, "error: the query \"%s\" has no word to search for", query);
    else if (n == 0)
        brg_tool_errorf(out, "no document matches \"%s\"", query);
    else
        brg_tool_printf(out, "%d of %zu documents match \"%s\":\n%s", n, docs->n, query, result);
}
