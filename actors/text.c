//  text - an offline text backend: readability, keywords, extractive
//  summaries and style checks.
//
//  Design notes.
//  Every public function first runs one tokeniser (s_doc_parse) that cuts
//  the text into words and sentences, as offsets into the caller's text,
//  and keeps a lowercased copy of the text so words can be compared without
//  copying them. The rules for words and sentences are in the header; they
//  are deliberately plain ASCII rules, so the results are exact and the
//  tests can state them. Keyword counts live in a small open-addressing hash
//  table whose keys point into the lowercased copy (no allocation per word).
//
//  Nothing here depends on the locale (no <ctype.h>): an ASCII letter is an
//  ASCII letter, and bytes >= 0x80 are word bytes without case, so UTF-8
//  text passes through unharmed. Every ordering is total (count, then
//  bytes; score, then position; offset, then rule), so two runs on the same
//  text give the same output on every machine.
//
//  Size limits come first: a text longer than BRG_TEXT_MAX is refused before
//  anything is allocated, and every allocation is at most linear in len.
#include "actors_internal.h"

//  ---------------------------------------------------------------------------
//  Bytes

static bool
s_is_lower(unsigned char c)
{
    return c >= 'a' && c <= 'z';
}

static bool
s_is_upper(unsigned char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool
s_is_letter(unsigned char c)
{
    return s_is_lower(c) || s_is_upper(c);
}

static bool
s_is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool
s_is_word_byte(unsigned char c)
{
    return s_is_letter(c) || s_is_digit(c) || c >= 0x80;
}

static bool
s_is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static unsigned char
s_lower(unsigned char c)
{
    return s_is_upper(c) ? (unsigned char)(c - 'A' + 'a') : c;
}

//  ---------------------------------------------------------------------------
//  The tokeniser

typedef struct {
    size_t off; // first byte in the text
    size_t len; // bytes
} s_word_t;

typedef struct {
    size_t off, len;     // the sentence's bytes in the text
    size_t first, count; // its words: words[first .. first + count)
    bool heading;        // closed by a blank line or the end, without punctuation
} s_sentence_t;

typedef struct {
    const char *text;                // the caller's text (borrowed)
    size_t len;                      // its length
    char *lower;                     // a lowercased copy of the text (owned)
    s_word_t *words;                 // every word, in order (owned)
    size_t n_words;                  //
    s_sentence_t *sentences;         // every sentence, in order (owned)
    size_t n_sentences;              //
    size_t cap_words, cap_sentences; // allocated entries
} s_doc_t;

static void
s_doc_free(s_doc_t *doc)
{
    free(doc->lower);
    free(doc->words);
    free(doc->sentences);
    memset(doc, 0, sizeof(*doc));
}

static int
s_grow(void **items, size_t *cap, size_t size)
{
    size_t cap2 = *cap ? *cap * 2 : 64;
    void *grown = realloc(*items, cap2 * size);
    if (!grown)
        return BRG_ENOMEM;
    *items = grown;
    *cap = cap2;
    return BRG_OK;
}

static int
s_add_word(s_doc_t *doc, size_t off, size_t len)
{
    if (doc->n_words == doc->cap_words &&
        s_grow((void **)&doc->words, &doc->cap_words, sizeof(s_word_t)) != BRG_OK)
        return BRG_ENOMEM;
    doc->words[doc->n_words++] = (s_word_t){off, len};
    return BRG_OK;
}

//  Close the sentence that began at start and ends before end, holding the
//  words from first on; a sentence without words is dropped.
static int
s_add_sentence(s_doc_t *doc, size_t start, size_t end, size_t first, bool heading)
{
    if (doc->n_words == first)
        return BRG_OK;
    if (doc->n_sentences == doc->cap_sentences &&
        s_grow((void **)&doc->sentences, &doc->cap_sentences, sizeof(s_sentence_t)) != BRG_OK)
        return BRG_ENOMEM;
    doc->sentences[doc->n_sentences++] =
        (s_sentence_t){start, end - start, first, doc->n_words - first, heading};
    return BRG_OK;
}

//  True when the '.' at text[dot] follows one of the abbreviations that do
//  not end a sentence. The token is read back to the previous space and any
//  opening bracket or quote, so "(e.g." is found.
static bool
s_after_abbreviation(const s_doc_t *doc, size_t dot)
{
    static const char *const abbreviations[] = {"dr",  "e.g", "i.e",  "mr",
                                                "mrs", "ms",  "prof", "vs"};
    size_t start = dot;
    while (start > 0 && !s_is_space((unsigned char)doc->text[start - 1]))
        start--;
    while (start < dot && !s_is_word_byte((unsigned char)doc->text[start]))
        start++;
    for (size_t i = 0; i < sizeof(abbreviations) / sizeof(abbreviations[0]); i++) {
        size_t n = strlen(abbreviations[i]);
        if (dot - start == n && memcmp(doc->lower + start, abbreviations[i], n) == 0)
            return true;
    }
    return false;
}

//  A blank line starts at the '\n' at text[i] when only spaces, tabs and
//  carriage returns separate it from the next '\n'.
static bool
s_blank_line_at(const s_doc_t *doc, size_t i)
{
    size_t j = i + 1;
    while (j < doc->len && (doc->text[j] == ' ' || doc->text[j] == '\t' || doc->text[j] == '\r'))
        j++;
    return j < doc->len && doc->text[j] == '\n';
}

//  The end of the run of bytes before `end` once trailing spaces are dropped.
static size_t
s_trim_end(const s_doc_t *doc, size_t start, size_t end)
{
    while (end > start && s_is_space((unsigned char)doc->text[end - 1]))
        end--;
    return end;
}

//  Length of the word starting at text[i] (see the header for the rule).
static size_t
s_word_length(const char *text, size_t len, size_t i)
{
    size_t j = i;
    while (j < len) {
        unsigned char c = (unsigned char)text[j];
        if (s_is_word_byte(c)) {
            j++;
            continue;
        }
        bool inside = j + 1 < len && s_is_word_byte((unsigned char)text[j + 1]);
        bool joiner = (c == '\'' || c == '-') && inside;
        bool decimal = (c == '.' || c == ',') && inside && s_is_digit((unsigned char)text[j - 1]) &&
                       s_is_digit((unsigned char)text[j + 1]);
        if (!joiner && !decimal)
            break;
        j++;
    }
    return j - i;
}

static int
s_doc_parse(s_doc_t *doc, const char *text, size_t len)
{
    memset(doc, 0, sizeof(*doc));
    if (!text && len > 0)
        return BRG_EINVAL;
    if (len > BRG_TEXT_MAX)
        return BRG_EMSGSIZE;
    doc->text = text;
    doc->len = len;
    doc->lower = malloc(len + 1);
    if (!doc->lower)
        return BRG_ENOMEM;
    for (size_t i = 0; i < len; i++)
        doc->lower[i] = (char)s_lower((unsigned char)text[i]);
    doc->lower[len] = '\0';

    const size_t none = (size_t)-1;
    size_t start = none; // first byte of the open sentence
    size_t first = 0;    // its first word
    size_t i = 0;
    int rc = BRG_OK;
    while (i < len && rc == BRG_OK) {
        unsigned char c = (unsigned char)text[i];
        if (start == none && !s_is_space(c))
            start = i;
        if (s_is_word_byte(c)) {
            size_t n = s_word_length(text, len, i);
            rc = s_add_word(doc, i, n);
            i += n;
        } else if (c == '.' || c == '!' || c == '?') {
            size_t j = i;
            while (j < len && (text[j] == '.' || text[j] == '!' || text[j] == '?'))
                j++;
            bool lone_dot = j - i == 1 && c == '.';
            while (j < len &&
                   (text[j] == '"' || text[j] == '\'' || text[j] == ')' || text[j] == ']'))
                j++;
            if ((j == len || s_is_space((unsigned char)text[j])) &&
                !(lone_dot && s_after_abbreviation(doc, i))) {
                rc = s_add_sentence(doc, start, j, first, false);
                start = none;
                first = doc->n_words;
            }
            i = j;
        } else if (c == '\n' && start != none && s_blank_line_at(doc, i)) {
            rc = s_add_sentence(doc, start, s_trim_end(doc, start, i), first, true);
            start = none;
            first = doc->n_words;
            i++;
        } else {
            i++;
        }
    }
    if (rc == BRG_OK && start != none)
        rc = s_add_sentence(doc, start, s_trim_end(doc, start, len), first, true);
    if (rc != BRG_OK)
        s_doc_free(doc);
    return rc;
}

//  ---------------------------------------------------------------------------
//  Word lists. Each is sorted, so a lookup is a binary search.

static const char *const s_stop_words[] = {
    "a",       "about",  "above",  "after",   "again",   "against", "all",     "also",    "am",
    "an",      "and",    "any",    "are",     "aren't",  "as",      "at",      "be",      "because",
    "been",    "before", "being",  "below",   "between", "both",    "but",     "by",      "can",
    "can't",   "could",  "did",    "didn't",  "do",      "does",    "doesn't", "doing",   "don't",
    "down",    "during", "each",   "even",    "ever",    "every",   "few",     "for",     "from",
    "further", "get",    "gets",   "got",     "had",     "has",     "have",    "having",  "he",
    "her",     "here",   "hers",   "herself", "him",     "himself", "his",     "how",     "however",
    "i",       "i'm",    "i've",   "if",      "in",      "into",    "is",      "isn't",   "it",
    "its",     "itself", "just",   "let",     "like",    "made",    "make",    "many",    "may",
    "me",      "might",  "more",   "most",    "much",    "must",    "my",      "myself",  "never",
    "no",      "nor",    "not",    "now",     "of",      "off",     "often",   "on",      "once",
    "one",     "only",   "or",     "other",   "our",     "ours",    "out",     "over",    "own",
    "same",    "she",    "should", "so",      "some",    "still",   "such",    "than",    "that",
    "the",     "their",  "theirs", "them",    "then",    "there",   "these",   "they",    "they're",
    "this",    "those",  "though", "through", "to",      "too",     "two",     "under",   "until",
    "up",      "upon",   "us",     "use",     "used",    "very",    "was",     "wasn't",  "way",
    "we",      "we're",  "well",   "were",    "what",    "when",    "where",   "whether", "which",
    "while",   "who",    "whom",   "why",     "will",    "with",    "within",  "without", "won't",
    "would",   "yet",    "you",    "you're",  "your",    "yours",
};

//  Forms of "to be" and the irregular past participles of the passive rule.
static const char *const s_be_forms[] = {"am", "are", "be", "been", "being", "is", "was", "were"};
static const char *const s_participles[] = {
    "begun",   "bought", "broken", "brought",    "built", "caught", "chosen", "done",  "drawn",
    "driven",  "eaten",  "fallen", "forgotten",  "found", "given",  "grown",  "held",  "hidden",
    "kept",    "known",  "laid",   "left",       "lost",  "made",   "meant",  "paid",  "said",
    "seen",    "sent",   "shown",  "sold",       "spent", "spoken", "stolen", "taken", "taught",
    "thought", "thrown", "told",   "understood", "worn",  "written"};
//  Words that end in "-ed" but are not participles.
static const char *const s_not_participles[] = {"hundred", "kindred", "naked", "sacred", "wicked"};

typedef struct {
    const char *word;
    size_t len;
} s_key_t;

static int
s_key_cmp(const void *key, const void *entry)
{
    const s_key_t *k = key;
    const char *e = *(const char *const *)entry;
    size_t n = strlen(e);
    int c = memcmp(k->word, e, k->len < n ? k->len : n);
    if (c)
        return c;
    return k->len < n ? -1 : k->len > n ? 1 : 0;
}

static bool
s_in_list(const char *word, size_t len, const char *const *list, size_t n)
{
    s_key_t key = {word, len};
    return bsearch(&key, list, n, sizeof(list[0]), s_key_cmp) != NULL;
}

#define S_IN(word, len, list) s_in_list(word, len, list, sizeof(list) / sizeof(list[0]))

//  ---------------------------------------------------------------------------
//  Syllables

static bool
s_is_vowel(const char *letters, size_t k)
{
    char c = letters[k];
    if (c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u')
        return true;
    return c == 'y' && k > 0 && !s_is_vowel(letters, k - 1);
}

int
brg_text_syllables(const char *word, size_t len)
{
    assert(word || len == 0);
    char letters[64];
    size_t n = 0;
    for (size_t i = 0; i < len && n < sizeof(letters); i++)
        if (s_is_letter((unsigned char)word[i]))
            letters[n++] = (char)s_lower((unsigned char)word[i]);
    int groups = 0;
    for (size_t k = 0; k < n; k++)
        if (s_is_vowel(letters, k) && (k == 0 || !s_is_vowel(letters, k - 1)))
            groups++;
    if (groups > 1 && n >= 3) {
        char last = letters[n - 1], before = letters[n - 2];
        bool consonant_before = !s_is_vowel(letters, n - 2);
        bool consonant_le = before == 'l' && !s_is_vowel(letters, n - 3);
        if (last == 'e' && consonant_before && !consonant_le)
            groups--; // make, there
        else if (n >= 4 && before == 'e' && !s_is_vowel(letters, n - 3)) {
            char c = letters[n - 3];
            bool ch_sh = c == 'h' && (letters[n - 4] == 'c' || letters[n - 4] == 's');
            if (last == 'd' && c != 't' && c != 'd')
                groups--; // jumped, but wanted
            else if (last == 's' && !strchr("cgsxz", c) && !ch_sh)
                groups--; // makes, but boxes, matches
        }
    }
    return groups > 0 ? groups : 1;
}

//  ---------------------------------------------------------------------------
//  Analysis

int
brg_text_analyse(const char *text, size_t len, brg_text_stats_t *out)
{
    assert(out);
    s_doc_t doc;
    int rc = s_doc_parse(&doc, text, len);
    if (rc != BRG_OK)
        return rc;
    brg_text_stats_t stats = {0};
    stats.words = doc.n_words;
    stats.sentences = doc.n_sentences;
    for (size_t i = 0; i < doc.n_words; i++)
        stats.syllables += (size_t)brg_text_syllables(text + doc.words[i].off, doc.words[i].len);
    if (stats.sentences > 0)
        stats.words_per_sentence = (double)stats.words / (double)stats.sentences;
    if (stats.words > 0) {
        double syllables_per_word = (double)stats.syllables / (double)stats.words;
        stats.reading_ease = 206.835 - 1.015 * stats.words_per_sentence - 84.6 * syllables_per_word;
        stats.grade = 0.39 * stats.words_per_sentence + 11.8 * syllables_per_word - 15.59;
    }
    s_doc_free(&doc);
    *out = stats;
    return BRG_OK;
}

//  ---------------------------------------------------------------------------
//  Keyword counts: a hash table of (lowercased word -> count)

typedef struct {
    const char *word; // into doc.lower; NULL = empty slot
    size_t len;
    size_t count;
} s_term_t;

typedef struct {
    s_term_t *slots; // capacity slots, linear probing
    size_t capacity; // a power of two, at least twice the words
    size_t n;        // terms in use
} s_terms_t;

//  The keyword a word counts as, as a key into doc.lower: false if the word
//  is not a keyword (no letter, or a stop word).
static bool
s_keyword(const s_doc_t *doc, const s_word_t *w, s_key_t *key)
{
    key->word = doc->lower + w->off;
    key->len = w->len;
    if (key->len > 2 && key->word[key->len - 2] == '\'' && key->word[key->len - 1] == 's')
        key->len -= 2;
    if (key->len > BRG_TEXT_WORD_MAX)
        key->len = BRG_TEXT_WORD_MAX;
    bool letter = false;
    for (size_t i = 0; i < key->len && !letter; i++)
        letter = s_is_letter((unsigned char)key->word[i]);
    return letter && !S_IN(key->word, key->len, s_stop_words);
}

static s_term_t *
s_terms_find(const s_terms_t *terms, const s_key_t *key)
{
    uint32_t h = 2166136261u; // FNV-1a
    for (size_t i = 0; i < key->len; i++)
        h = (h ^ (unsigned char)key->word[i]) * 16777619u;
    size_t j = h & (terms->capacity - 1);
    while (terms->slots[j].word && (terms->slots[j].len != key->len ||
                                    memcmp(terms->slots[j].word, key->word, key->len) != 0))
        j = (j + 1) & (terms->capacity - 1);
    return &terms->slots[j];
}

static int
s_terms_count(const s_doc_t *doc, s_terms_t *terms)
{
    terms->capacity = 16;
    while (terms->capacity < 2 * doc->n_words)
        terms->capacity *= 2;
    terms->n = 0;
    terms->slots = calloc(terms->capacity, sizeof(s_term_t));
    if (!terms->slots)
        return BRG_ENOMEM;
    for (size_t i = 0; i < doc->n_words; i++) {
        s_key_t key;
        if (!s_keyword(doc, &doc->words[i], &key))
            continue;
        s_term_t *t = s_terms_find(terms, &key);
        if (!t->word) {
            *t = (s_term_t){key.word, key.len, 0};
            terms->n++;
        }
        t->count++;
    }
    return BRG_OK;
}

static int
s_term_order(const void *a, const void *b)
{
    const s_term_t *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    int c = memcmp(x->word, y->word, x->len < y->len ? x->len : y->len);
    if (c)
        return c;
    return x->len < y->len ? -1 : x->len > y->len ? 1 : 0;
}

int
brg_text_keywords(const char *text, size_t len, brg_text_keyword_t *out, size_t max)
{
    if (!out && max > 0)
        return BRG_EINVAL;
    s_doc_t doc;
    s_terms_t terms;
    int rc = s_doc_parse(&doc, text, len);
    if (rc != BRG_OK)
        return rc;
    rc = s_terms_count(&doc, &terms);
    if (rc != BRG_OK) {
        s_doc_free(&doc);
        return rc;
    }
    // Pack the used slots to the front, then sort them.
    size_t n = 0;
    for (size_t j = 0; j < terms.capacity; j++)
        if (terms.slots[j].word)
            terms.slots[n++] = terms.slots[j];
    qsort(terms.slots, n, sizeof(s_term_t), s_term_order);
    for (size_t i = 0; i < n && i < max; i++) {
        memcpy(out[i].word, terms.slots[i].word, terms.slots[i].len);
        out[i].word[terms.slots[i].len] = '\0';
        out[i].count = terms.slots[i].count;
    }
    free(terms.slots);
    s_doc_free(&doc);
    return n > INT32_MAX ? INT32_MAX : (int)n;
}

//  ---------------------------------------------------------------------------
//  Sentences and summaries

int
brg_text_sentences(const char *text, size_t len, brg_text_span_t *out, size_t max)
{
    if (!out && max > 0)
        return BRG_EINVAL;
    s_doc_t doc;
    int rc = s_doc_parse(&doc, text, len);
    if (rc != BRG_OK)
        return rc;
    for (size_t i = 0; i < doc.n_sentences && i < max; i++)
        out[i] = (brg_text_span_t){doc.sentences[i].off, doc.sentences[i].len};
    rc = (int)doc.n_sentences;
    s_doc_free(&doc);
    return rc;
}

typedef struct {
    size_t index;
    bool eligible; // neither a heading nor short
    double score;
} s_ranked_t;

//  Eligible sentences first, then by score, then by position.
static int
s_rank_order(const void *a, const void *b)
{
    const s_ranked_t *x = a, *y = b;
    if (x->eligible != y->eligible)
        return x->eligible ? -1 : 1;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index ? 1 : 0;
}

static int
s_index_order(const void *a, const void *b)
{
    const s_ranked_t *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index ? 1 : 0;
}

int
brg_text_summarise(const char *text, size_t len, size_t k, brg_text_span_t *out)
{
    if (!out && k > 0)
        return BRG_EINVAL;
    s_doc_t doc;
    s_terms_t terms = {0};
    int rc = s_doc_parse(&doc, text, len);
    if (rc != BRG_OK)
        return rc;
    s_ranked_t *ranked = malloc((doc.n_sentences + 1) * sizeof(*ranked));
    if (!ranked || (rc = s_terms_count(&doc, &terms)) != BRG_OK) {
        free(ranked);
        s_doc_free(&doc);
        return rc != BRG_OK ? rc : BRG_ENOMEM;
    }
    bool lead = true; // the next eligible sentence is the lead
    for (size_t s = 0; s < doc.n_sentences; s++) {
        const s_sentence_t *sentence = &doc.sentences[s];
        double sum = 0;
        for (size_t w = sentence->first; w < sentence->first + sentence->count; w++) {
            s_key_t key;
            if (s_keyword(&doc, &doc.words[w], &key))
                sum += (double)s_terms_find(&terms, &key)->count;
        }
        bool eligible = !sentence->heading && sentence->count >= BRG_TEXT_SUMMARY_MIN_WORDS;
        double bonus = eligible && lead ? 1.5 : 1.0;
        lead = lead && !eligible;
        ranked[s] = (s_ranked_t){s, eligible, sum / (double)sentence->count * bonus};
    }
    size_t n = k < doc.n_sentences ? k : doc.n_sentences;
    qsort(ranked, doc.n_sentences, sizeof(*ranked), s_rank_order);
    qsort(ranked, n, sizeof(*ranked), s_index_order);
    for (size_t i = 0; i < n; i++) {
        const s_sentence_t *sentence = &doc.sentences[ranked[i].index];
        out[i] = (brg_text_span_t){sentence->off, sentence->len};
    }
    free(ranked);
    free(terms.slots);
    s_doc_free(&doc);
    return (int)n;
}

//  ---------------------------------------------------------------------------
//  Style checks

void
brg_text_check_opts_init(brg_text_check_opts_t *opts)
{
    assert(opts);
    memset(opts, 0, sizeof(*opts));
    opts->max_sentence_words = 30;
}

const char *
brg_text_rule_name(brg_text_rule_t rule)
{
    switch (rule) {
    case BRG_TEXT_RULE_REPEATED_WORD:
        return "repeated-word";
    case BRG_TEXT_RULE_LONG_SENTENCE:
        return "long-sentence";
    case BRG_TEXT_RULE_A_AN:
        return "a-an";
    case BRG_TEXT_RULE_DOUBLE_SPACE:
        return "double-space";
    case BRG_TEXT_RULE_CAPITAL:
        return "capital";
    case BRG_TEXT_RULE_PASSIVE:
        return "passive";
    }
    return "unknown";
}

typedef struct {
    brg_text_finding_t *items;
    size_t n, cap;
} s_findings_t;

//  Quoted text in messages is cut to this many bytes.
#define S_QUOTE_MAX 40

//  Append a finding and return it, for the caller to write its message; NULL
//  if out of memory.
static brg_text_finding_t *
s_find(s_findings_t *f, brg_text_rule_t rule, size_t off, size_t len)
{
    if (f->n == f->cap && s_grow((void **)&f->items, &f->cap, sizeof(*f->items)) != BRG_OK)
        return NULL;
    brg_text_finding_t *item = &f->items[f->n++];
    memset(item, 0, sizeof(*item));
    item->rule = rule;
    item->offset = off;
    item->length = len;
    return item;
}

//  True when only whitespace separates words a and b (no punctuation).
static bool
s_adjacent(const s_doc_t *doc, const s_word_t *a, const s_word_t *b)
{
    for (size_t i = a->off + a->len; i < b->off; i++)
        if (!s_is_space((unsigned char)doc->text[i]))
            return false;
    return true;
}

static bool
s_starts_with(const char *word, size_t len, const char *prefix)
{
    size_t n = strlen(prefix);
    return len >= n && memcmp(word, prefix, n) == 0;
}

//  Does the word start with a vowel sound? By its first letter, except for
//  the common words whose sound differs from their spelling, numbers (by how
//  they are read) and acronyms (by the name of their first letter).
static bool
s_vowel_sound(const s_doc_t *doc, const s_word_t *w)
{
    static const char *const silent_h[] = {"heir", "honest", "honor", "honour", "hour"};
    static const char *const you_sound[] = {"eu",  "ewe", "ubiq", "unanim", "uni", "ura", "uri",
                                            "uro", "usa", "use",  "usu",    "ute", "uti", "uto"};
    static const char *const un_prefix[] = {"unid", "unim", "unin"}; // un + vowel: "an unimportant"
    const char *orig = doc->text + w->off;
    const char *word = doc->lower + w->off;
    size_t len = w->len;
    if (s_is_digit((unsigned char)word[0])) {
        // "an 8", "an 11", "an 18", "an 80"; "a 1", "a 110"
        bool eleven = len >= 2 && word[0] == '1' && (word[1] == '1' || word[1] == '8') &&
                      (len == 2 || !s_is_digit((unsigned char)word[2]));
        return word[0] == '8' || eleven;
    }
    bool acronym = len >= 2;
    for (size_t i = 0; i < len && acronym; i++)
        acronym = !s_is_lower((unsigned char)orig[i]);
    if (acronym && s_is_upper((unsigned char)orig[0]))
        return strchr("AEFHILMNORSX", orig[0]) != NULL; // "an FAQ", "a URL"
    if ((len == 3 && memcmp(word, "one", 3) == 0) || (len == 4 && memcmp(word, "once", 4) == 0) ||
        s_starts_with(word, len, "one-"))
        return false;
    for (size_t i = 0; i < sizeof(silent_h) / sizeof(silent_h[0]); i++)
        if (s_starts_with(word, len, silent_h[i]))
            return true;
    for (size_t i = 0; i < sizeof(un_prefix) / sizeof(un_prefix[0]); i++)
        if (s_starts_with(word, len, un_prefix[i]))
            return true;
    for (size_t i = 0; i < sizeof(you_sound) / sizeof(you_sound[0]); i++)
        if (s_starts_with(word, len, you_sound[i]))
            return false;
    return strchr("aeiou", word[0]) != NULL;
}

static bool
s_is_participle(const char *word, size_t len)
{
    if (S_IN(word, len, s_participles))
        return true;
    bool ed = len >= 4 && word[len - 2] == 'e' && word[len - 1] == 'd';
    return ed && word[len - 3] != 'e' && !S_IN(word, len, s_not_participles);
}

//  The checks that look at a word and the next one.
static int
s_check_pairs(const s_doc_t *doc, const bool *starts_sentence, s_findings_t *f)
{
    brg_text_finding_t *item;
    for (size_t i = 0; i + 1 < doc->n_words; i++) {
        const s_word_t *a = &doc->words[i], *b = &doc->words[i + 1];
        if (!s_adjacent(doc, a, b))
            continue;
        const char *wa = doc->lower + a->off, *wb = doc->lower + b->off;
        const char *pair = doc->text + a->off;
        size_t pair_len = b->off + b->len - a->off;
        int quote = (int)(pair_len > S_QUOTE_MAX ? S_QUOTE_MAX : pair_len);
        if (a->len == b->len && memcmp(wa, wb, a->len) == 0 && s_is_letter((unsigned char)wb[0])) {
            if (!(item = s_find(f, BRG_TEXT_RULE_REPEATED_WORD, b->off, b->len)))
                return BRG_ENOMEM;
            snprintf(item->message, sizeof(item->message), "repeated word \"%.*s\"",
                     (int)(b->len > S_QUOTE_MAX ? S_QUOTE_MAX : b->len), doc->text + b->off);
        }
        // A capital "A" inside a sentence is more likely a name ("plan A").
        bool a_article = a->len == 1 && (pair[0] == 'a' || (pair[0] == 'A' && starts_sentence[i]));
        bool an_article = a->len == 2 && memcmp(wa, "an", 2) == 0;
        if (a_article || an_article) {
            bool vowel = s_vowel_sound(doc, b);
            if (a_article == vowel) {
                if (!(item = s_find(f, BRG_TEXT_RULE_A_AN, a->off, pair_len)))
                    return BRG_ENOMEM;
                snprintf(item->message, sizeof(item->message),
                         "\"%.*s\": use \"%s\" before a %s sound", quote, pair, vowel ? "an" : "a",
                         vowel ? "vowel" : "consonant");
            }
        }
        if (S_IN(wa, a->len, s_be_forms) && s_is_participle(wb, b->len)) {
            if (!(item = s_find(f, BRG_TEXT_RULE_PASSIVE, a->off, pair_len)))
                return BRG_ENOMEM;
            snprintf(item->message, sizeof(item->message), "passive voice? \"%.*s\"", quote, pair);
        }
    }
    return BRG_OK;
}

static int
s_check_sentences(const s_doc_t *doc, int max_words, s_findings_t *f)
{
    brg_text_finding_t *item;
    for (size_t s = 0; s < doc->n_sentences; s++) {
        const s_sentence_t *sentence = &doc->sentences[s];
        const s_word_t *w = &doc->words[sentence->first];
        if (sentence->count > (size_t)max_words) {
            if (!(item = s_find(f, BRG_TEXT_RULE_LONG_SENTENCE, sentence->off, sentence->len)))
                return BRG_ENOMEM;
            snprintf(item->message, sizeof(item->message), "sentence has %zu words (more than %d)",
                     sentence->count, max_words);
        }
        if (s_is_lower((unsigned char)doc->text[w->off])) {
            if (!(item = s_find(f, BRG_TEXT_RULE_CAPITAL, w->off, w->len)))
                return BRG_ENOMEM;
            snprintf(item->message, sizeof(item->message),
                     "sentence starts with a lowercase letter: \"%.*s\"",
                     (int)(w->len > S_QUOTE_MAX ? S_QUOTE_MAX : w->len), doc->text + w->off);
        }
    }
    return BRG_OK;
}

//  Runs of two or more spaces between two non-space bytes (indentation and
//  trailing spaces are not findings).
static int
s_check_spaces(const s_doc_t *doc, s_findings_t *f)
{
    for (size_t i = 1; i < doc->len; i++) {
        if (doc->text[i] != ' ' || s_is_space((unsigned char)doc->text[i - 1]))
            continue;
        size_t j = i;
        while (j < doc->len && doc->text[j] == ' ')
            j++;
        if (j - i >= 2 && j < doc->len && !s_is_space((unsigned char)doc->text[j])) {
            brg_text_finding_t *item = s_find(f, BRG_TEXT_RULE_DOUBLE_SPACE, i, j - i);
            if (!item)
                return BRG_ENOMEM;
            snprintf(item->message, sizeof(item->message), "%zu spaces in a row", j - i);
        }
        i = j;
    }
    return BRG_OK;
}

static int
s_finding_order(const void *a, const void *b)
{
    const brg_text_finding_t *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return (int)x->rule - (int)y->rule;
}

int
brg_text_check(const char *text, size_t len, const brg_text_check_opts_t *opts,
               brg_text_finding_t *out, size_t max)
{
    brg_text_check_opts_t defaults;
    brg_text_check_opts_init(&defaults);
    opts = opts ? opts : &defaults;
    if ((!out && max > 0) || opts->max_sentence_words <= 0)
        return BRG_EINVAL;
    s_doc_t doc;
    int rc = s_doc_parse(&doc, text, len);
    if (rc != BRG_OK)
        return rc;
    s_findings_t f = {0};
    bool *starts_sentence = calloc(doc.n_words + 1, sizeof(bool));
    if (!starts_sentence)
        rc = BRG_ENOMEM;
    for (size_t s = 0; rc == BRG_OK && s < doc.n_sentences; s++)
        starts_sentence[doc.sentences[s].first] = true;
    if (rc == BRG_OK)
        rc = s_check_pairs(&doc, starts_sentence, &f);
    if (rc == BRG_OK)
        rc = s_check_sentences(&doc, opts->max_sentence_words, &f);
    if (rc == BRG_OK)
        rc = s_check_spaces(&doc, &f);
    if (rc == BRG_OK && f.n > 0) // qsort wants a valid pointer even for no items
        qsort(f.items, f.n, sizeof(*f.items), s_finding_order);
    if (rc == BRG_OK) {
        // One pass over the text gives every finding its line and column.
        int line = 1;
        size_t line_start = 0, at = 0;
        for (size_t i = 0; i < f.n; i++) {
            for (; at < f.items[i].offset; at++)
                if (text[at] == '\n') {
                    line++;
                    line_start = at + 1;
                }
            f.items[i].line = line;
            f.items[i].column = (int)(f.items[i].offset - line_start) + 1;
        }
        for (size_t i = 0; i < f.n && i < max; i++)
            out[i] = f.items[i];
        rc = f.n > INT32_MAX ? INT32_MAX : (int)f.n;
    }
    free(starts_sentence);
    free(f.items);
    s_doc_free(&doc);
    return rc;
}
