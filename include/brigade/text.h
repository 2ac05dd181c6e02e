//  text - an offline text backend: readability, keywords, extractive
//  summaries and style checks, as pure functions.
//
//  The stand-in for a language model when there is no network: real text
//  work whose results are exact, so they can be tested. Every function reads
//  (text, len) - the text need not be NUL-terminated - and shares one
//  tokeniser, so they agree on what a word and a sentence are:
//
//  - A word is a run of ASCII letters, digits and bytes >= 0x80 (UTF-8), kept
//    together across an apostrophe or hyphen between two such bytes
//    ("don't", "well-known") and across '.' or ',' between two digits
//    ("3.5", "2,000"). Only ASCII letters have a case.
//  - A sentence ends at a run of '.', '!' or '?' (and any closing quotes or
//    brackets after it) followed by whitespace or the end of the text, at a
//    blank line, or at the end of the text. A lone '.' after "Dr", "e.g",
//    "i.e", "Mr", "Mrs", "Ms", "Prof" or "vs" does not end one. A sentence
//    without words is not counted. One closed by a blank line or the end of
//    the text without that punctuation is a heading (a title line): it counts
//    as a sentence, but a summary takes it only to fill in.
//
//  Threads: every function is pure and may run on any thread at once; none
//  blocks. Errors: BRG_EINVAL (NULL text with len > 0, NULL out with max >
//  0), BRG_EMSGSIZE (len > BRG_TEXT_MAX), BRG_ENOMEM; on error *out is
//  unchanged.
#ifndef BRG_TEXT_H
#define BRG_TEXT_H

#include <stddef.h>

#include "export.h"

//  Longest text the functions accept, in bytes.
#define BRG_TEXT_MAX (4u * 1024 * 1024)

//  Longest keyword kept, in bytes, without the NUL (longer ones are cut).
#define BRG_TEXT_WORD_MAX 47

//  Shorter sentences only fill in a summary (see brg_text_summarise).
#define BRG_TEXT_SUMMARY_MIN_WORDS 4

//  Longest finding message, in bytes, without the NUL.
#define BRG_TEXT_MESSAGE_MAX 95

//  Counts and readability of a text (a plain value: read its fields).
typedef struct brg_text_stats {
    size_t words;
    size_t sentences;
    size_t syllables;          // sum of brg_text_syllables over the words
    double words_per_sentence; // 0 when there is no sentence
    double reading_ease;       // Flesch: 206.835 - 1.015 w/s - 84.6 syl/w (0 if no words)
    double grade;              // Flesch-Kincaid: 0.39 w/s + 11.8 syl/w - 15.59 (0 if no words)
} brg_text_stats_t;

//  One keyword and how often it occurs.
typedef struct brg_text_keyword {
    char word[BRG_TEXT_WORD_MAX + 1]; // lowercased, NUL-terminated
    size_t count;
} brg_text_keyword_t;

//  A run of the caller's text: text[offset .. offset + length).
typedef struct brg_text_span {
    size_t offset;
    size_t length;
} brg_text_span_t;

//  The style rules, in the order findings at one offset are reported.
typedef enum {
    BRG_TEXT_RULE_REPEATED_WORD = 0, // "the the"
    BRG_TEXT_RULE_LONG_SENTENCE,     // more than opts.max_sentence_words words
    BRG_TEXT_RULE_A_AN,              // "a" before a vowel sound, "an" before a consonant sound
    BRG_TEXT_RULE_DOUBLE_SPACE,      // two or more spaces between words
    BRG_TEXT_RULE_CAPITAL,           // a sentence that starts with a lowercase letter
    BRG_TEXT_RULE_PASSIVE            // a form of "to be" before a participle: a hint
} brg_text_rule_t;

//  One style finding (a plain value).
typedef struct brg_text_finding {
    brg_text_rule_t rule;
    size_t offset; // first byte the finding is about
    size_t length; // bytes it covers
    int line;      // 1-based line of offset
    int column;    // 1-based byte column of offset
    char message[BRG_TEXT_MESSAGE_MAX + 1];
} brg_text_finding_t;

//  Style checker options. Start from brg_text_check_opts_init(&opts).
typedef struct brg_text_check_opts {
    int max_sentence_words; // longer sentences are findings (default 30, > 0)
} brg_text_check_opts_t;

BRG_EXPORT void brg_text_check_opts_init(brg_text_check_opts_t *opts);

//  Count words, sentences and syllables and compute the Flesch scores.
//  Returns BRG_OK or an error (see the top).
BRG_EXPORT int brg_text_analyse(const char *text, size_t len, brg_text_stats_t *out);

//  Estimate the syllables of one word from its ASCII letters: count groups
//  of vowels ('y' is one unless first or after a vowel), then drop a silent
//  final "e" (not in a consonant + "le" ending), and the "e" of an "-ed"
//  after a consonant other than t or d, and of an "-es" after a consonant
//  other than c, g, s, x, z, "ch" or "sh". At least 1 (also for a word
//  without letters, such as a number).
BRG_EXPORT int brg_text_syllables(const char *word, size_t len);

//  The top keywords: words lowercased, a final "'s" dropped, stop words and
//  words without letters left out; most frequent first, ties alphabetically.
//  Fills out[0 .. min(n, max)) and returns n, the number of distinct
//  keywords (which may exceed max), or an error.
BRG_EXPORT int brg_text_keywords(const char *text, size_t len, brg_text_keyword_t *out, size_t max);

//  The sentences, in order, each from its first non-space byte to its
//  closing punctuation. Fills out[0 .. min(n, max)) and returns n, or an
//  error.
BRG_EXPORT int brg_text_sentences(const char *text, size_t len, brg_text_span_t *out, size_t max);

//  Extractive summary: score each sentence as the sum, over its words that
//  are keywords (see brg_text_keywords), of how often that keyword occurs in
//  the whole text, divided by the sentence's number of words. Headings and
//  sentences of fewer than BRG_TEXT_SUMMARY_MIN_WORDS words (which that
//  average favours) are taken only when there are not k others; the first
//  of the others, the lead, which usually states the topic, counts 1.5
//  times. Keep the k best (ties: the earlier) and write them to out[0 .. n)
//  in their original order. Returns n = min(k, sentences), or an error.
BRG_EXPORT int brg_text_summarise(const char *text, size_t len, size_t k, brg_text_span_t *out);

//  Check the style rules (opts may be NULL for the defaults). Findings are
//  sorted by offset, then by rule. Fills out[0 .. min(n, max)) and returns
//  n, the number of findings (which may exceed max), or an error; BRG_EINVAL
//  also for opts->max_sentence_words <= 0.
BRG_EXPORT int brg_text_check(const char *text, size_t len, const brg_text_check_opts_t *opts,
                              brg_text_finding_t *out, size_t max);

//  The rule's short id: "repeated-word", "long-sentence", "a-an",
//  "double-space", "capital", "passive"; "unknown" otherwise. Static string.
BRG_EXPORT const char *brg_text_rule_name(brg_text_rule_t rule);

#endif
