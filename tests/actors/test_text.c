//  test_text - the offline text backend on fixed inputs, with exact
//  expected outputs: tokeniser (words, sentences, abbreviations, blank
//  lines), syllables, Flesch scores, keywords and their tie-breaking, the
//  extractive summary, and each style rule with its offsets, lines and
//  messages. Every expected value here was worked out by hand from the
//  rules in include/brigade/text.h.
#include "test_util.h"

//  Offset of needle in text (the needle must be there).
static size_t
s_at(const char *text, const char *needle)
{
    const char *hit = strstr(text, needle);
    ck_assert_ptr_nonnull(hit);
    return (size_t)(hit - text);
}

static void
s_assert_span(const char *text, brg_text_span_t span, const char *expected)
{
    ck_assert_uint_eq(span.length, strlen(expected));
    ck_assert_int_eq(memcmp(text + span.offset, expected, span.length), 0);
}

static void
s_assert_finding(const brg_text_finding_t *f, brg_text_rule_t rule, size_t offset, size_t length,
                 int line, int column, const char *message)
{
    ck_assert_str_eq(brg_text_rule_name(f->rule), brg_text_rule_name(rule));
    ck_assert_uint_eq(f->offset, offset);
    ck_assert_uint_eq(f->length, length);
    ck_assert_int_eq(f->line, line);
    ck_assert_int_eq(f->column, column);
    ck_assert_str_eq(f->message, message);
}

//  ---------------------------------------------------------------------------
//  Words, sentences, syllables, scores

START_TEST(test_text_syllables_follow_the_documented_heuristic)
{
    static const struct {
        const char *word;
        int syllables;
    } cases[] = {
        {"the", 1},     {"cat", 1},         {"table", 2},      {"make", 1},    {"makes", 1},
        {"jumped", 1},  {"wanted", 2},      {"boxes", 2},      {"matches", 2}, {"played", 1},
        {"happy", 2},   {"yes", 1},         {"beyond", 2},     {"people", 2},  {"agree", 2},
        {"Reading", 2}, {"readability", 5}, {"university", 5}, {"don't", 1},   {"2024", 1},
        {"", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(brg_text_syllables(cases[i].word, strlen(cases[i].word)) ==
                          cases[i].syllables,
                      "%s: expected %d, got %d", cases[i].word, cases[i].syllables,
                      brg_text_syllables(cases[i].word, strlen(cases[i].word)));
}
END_TEST

START_TEST(test_text_analyse_counts_words_sentences_and_flesch_scores)
{
    // 9 one-syllable words in 2 sentences: 4.5 words per sentence.
    const char *plain = "The cat sat on the mat. The dog ran.";
    brg_text_stats_t st;
    ck_assert_int_eq(brg_text_analyse(plain, strlen(plain), &st), BRG_OK);
    ck_assert_uint_eq(st.words, 9);
    ck_assert_uint_eq(st.sentences, 2);
    ck_assert_uint_eq(st.syllables, 9);
    ck_assert_double_eq_tol(st.words_per_sentence, 4.5, 1e-9);
    ck_assert_double_eq_tol(st.reading_ease, 206.835 - 1.015 * 4.5 - 84.6, 1e-9); // 117.6675
    ck_assert_double_eq_tol(st.grade, 0.39 * 4.5 + 11.8 - 15.59, 1e-9);           // -2.035

    // Reading(2) is(1) a(1) pleasure(2) Readability(5) matters(2): 13 / 6.
    const char *hard = "Reading is a pleasure. Readability matters!";
    ck_assert_int_eq(brg_text_analyse(hard, strlen(hard), &st), BRG_OK);
    ck_assert_uint_eq(st.words, 6);
    ck_assert_uint_eq(st.sentences, 2);
    ck_assert_uint_eq(st.syllables, 13);
    ck_assert_double_eq_tol(st.reading_ease, 206.835 - 1.015 * 3 - 84.6 * 13 / 6, 1e-9);
    ck_assert_double_eq_tol(st.grade, 0.39 * 3 + 11.8 * 13 / 6 - 15.59, 1e-9);

    ck_assert_int_eq(brg_text_analyse("", 0, &st), BRG_OK);
    ck_assert_uint_eq(st.words, 0);
    ck_assert_uint_eq(st.sentences, 0);
    ck_assert_double_eq(st.reading_ease, 0);
    ck_assert_double_eq(st.grade, 0);
}
END_TEST

START_TEST(test_text_sentences_end_at_punctuation_and_blank_lines_but_not_abbreviations)
{
    const char *text = "Dr. Smith arrived at 3.5 o'clock on Monday! Was he late? \"Yes.\" "
                       "She left (e.g. early).\n\nA heading without a period\n  \nThe end";
    brg_text_span_t s[8];
    ck_assert_int_eq(brg_text_sentences(text, strlen(text), s, 8), 6);
    s_assert_span(text, s[0], "Dr. Smith arrived at 3.5 o'clock on Monday!");
    s_assert_span(text, s[1], "Was he late?");
    s_assert_span(text, s[2], "\"Yes.\"");
    s_assert_span(text, s[3], "She left (e.g. early).");
    s_assert_span(text, s[4], "A heading without a period");
    s_assert_span(text, s[5], "The end");
    // The count is the whole count even when out has less room.
    ck_assert_int_eq(brg_text_sentences(text, strlen(text), s, 2), 6);
    ck_assert_int_eq(brg_text_sentences(text, strlen(text), NULL, 0), 6);

    // "3.5" and "o'clock" are one word each: 8 words in the first sentence.
    brg_text_stats_t st;
    ck_assert_int_eq(brg_text_analyse(text, s[0].length, &st), BRG_OK);
    ck_assert_uint_eq(st.words, 8);
    ck_assert_uint_eq(st.sentences, 1);

    // Punctuation alone is no sentence.
    ck_assert_int_eq(brg_text_sentences("... !? --", 9, s, 8), 0);
}
END_TEST

//  ---------------------------------------------------------------------------
//  Keywords and summaries

START_TEST(test_text_keywords_drop_stop_words_and_break_ties_alphabetically)
{
    const char *text = "Actors send messages. An actor's mailbox holds messages; actors never "
                       "share state. Messages! The THE the 2024.";
    brg_text_keyword_t kw[10];
    // messages 3, actors 2, then the ones seen once in alphabetical order;
    // "actor's" counts as "actor"; stop words and the number are left out.
    ck_assert_int_eq(brg_text_keywords(text, strlen(text), kw, 10), 8);
    static const char *const words[] = {"messages", "actors", "actor", "holds",
                                        "mailbox",  "send",   "share", "state"};
    static const size_t counts[] = {3, 2, 1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 8; i++) {
        ck_assert_str_eq(kw[i].word, words[i]);
        ck_assert_uint_eq(kw[i].count, counts[i]);
    }
    brg_text_keyword_t top[2];
    ck_assert_int_eq(brg_text_keywords(text, strlen(text), top, 2), 8);
    ck_assert_str_eq(top[1].word, "actors");
    ck_assert_int_eq(brg_text_keywords("the and of", 10, kw, 10), 0);
}
END_TEST

START_TEST(test_text_summarise_keeps_the_best_sentences_in_their_original_order)
{
    // Term counts: actors 2, process 2, messages 2, every other keyword 1.
    // S0 (2+2+2+1)/5 * 1.5 (the lead) = 2.1; S1 4/5 = 0.8;
    // S2 (actors 2 + state 1 + process 2 + messages 2 + safely 1)/7 = 1.14;
    // S3 4/5 = 0.8.
    const char *text = "Actors process messages in order. Cats sleep all day long. Actors own "
                       "state and process messages safely. Birds sing and fly south.";
    brg_text_span_t s[4];
    ck_assert_int_eq(brg_text_summarise(text, strlen(text), 2, s), 2);
    s_assert_span(text, s[0], "Actors process messages in order.");
    s_assert_span(text, s[1], "Actors own state and process messages safely.");
    ck_assert_int_eq(brg_text_summarise(text, strlen(text), 3, s), 3);
    s_assert_span(text, s[1], "Cats sleep all day long."); // ties with S3: the earlier wins
    s_assert_span(text, s[2], "Actors own state and process messages safely.");
    ck_assert_int_eq(brg_text_summarise(text, strlen(text), 9, s), 4);
    s_assert_span(text, s[3], "Birds sing and fly south.");
    ck_assert_int_eq(brg_text_summarise(text, strlen(text), 0, NULL), 0);
}
END_TEST

START_TEST(test_text_summarise_takes_headings_and_short_sentences_only_to_fill_in)
{
    // Every keyword occurs once. The heading, "Yes." and "Known bugs remain."
    // score 1.0 each, as much as the lead S2 (4/6 * 1.5) and more than S3
    // (4/5), yet they come only after those two.
    const char *text = "Release Notes\n\nYes. The importer reads large files now. The export "
                       "dialog remembers folders. Known bugs remain.";
    brg_text_span_t s[3];
    ck_assert_int_eq(brg_text_summarise(text, strlen(text), 2, s), 2);
    s_assert_span(text, s[0], "The importer reads large files now.");
    s_assert_span(text, s[1], "The export dialog remembers folders.");
    ck_assert_int_eq(brg_text_summarise(text, strlen(text), 3, s), 3);
    s_assert_span(text, s[0], "Release Notes"); // the earliest of the three at 1.0
}
END_TEST

//  ---------------------------------------------------------------------------
//  Style rules

START_TEST(test_text_check_finds_repeated_words_but_not_across_punctuation)
{
    const char *text = "It is the the best. That, that is fine.\nWe we go.";
    brg_text_finding_t f[8];
    ck_assert_int_eq(brg_text_check(text, strlen(text), NULL, f, 8), 2);
    s_assert_finding(&f[0], BRG_TEXT_RULE_REPEATED_WORD, 10, 3, 1, 11, "repeated word \"the\"");
    s_assert_finding(&f[1], BRG_TEXT_RULE_REPEATED_WORD, 43, 2, 2, 4, "repeated word \"we\"");
}
END_TEST

START_TEST(test_text_check_finds_sentences_longer_than_the_limit)
{
    const char *text = "One two three four five. One two three four five six.";
    brg_text_check_opts_t opts;
    brg_text_check_opts_init(&opts);
    ck_assert_int_eq(opts.max_sentence_words, 30);
    ck_assert_int_eq(brg_text_check(text, strlen(text), &opts, NULL, 0), 0);
    opts.max_sentence_words = 5;
    brg_text_finding_t f[4];
    ck_assert_int_eq(brg_text_check(text, strlen(text), &opts, f, 4), 1);
    s_assert_finding(&f[0], BRG_TEXT_RULE_LONG_SENTENCE, 25, 28, 1, 26,
                     "sentence has 6 words (more than 5)");
    opts.max_sentence_words = 0;
    ck_assert_int_eq(brg_text_check(text, strlen(text), &opts, f, 4), BRG_EINVAL);
}
END_TEST

START_TEST(test_text_check_a_an_follows_the_sound_with_its_exceptions)
{
    const char *text =
        "We saw a apple, an banana, an hour, a university, a one-off, an FAQ, a URL, "
        "an 8, an 11, a 10, an umbrella, a union, an unimportant step, a euro and "
        "an European plan A idea.";
    brg_text_check_opts_t opts;
    brg_text_check_opts_init(&opts);
    opts.max_sentence_words = 100;
    brg_text_finding_t f[8];
    ck_assert_int_eq(brg_text_check(text, strlen(text), &opts, f, 8), 3);
    s_assert_finding(&f[0], BRG_TEXT_RULE_A_AN, 7, 7, 1, 8,
                     "\"a apple\": use \"an\" before a vowel sound");
    s_assert_finding(&f[1], BRG_TEXT_RULE_A_AN, 16, 9, 1, 17,
                     "\"an banana\": use \"a\" before a consonant sound");
    size_t at = s_at(text, "an European");
    s_assert_finding(&f[2], BRG_TEXT_RULE_A_AN, at, 11, 1, (int)at + 1,
                     "\"an European\": use \"a\" before a consonant sound");

    // A capital "A" counts as the article only where a sentence starts.
    const char *owl = "A owl. An honest man. Plan A is fine.";
    ck_assert_int_eq(brg_text_check(owl, strlen(owl), NULL, f, 8), 1);
    s_assert_finding(&f[0], BRG_TEXT_RULE_A_AN, 0, 5, 1, 1,
                     "\"A owl\": use \"an\" before a vowel sound");
}
END_TEST

START_TEST(test_text_check_finds_double_spaces_between_words_but_not_indentation)
{
    const char *text = "One  two.   Three\n    indented  x \nend";
    brg_text_finding_t f[8];
    ck_assert_int_eq(brg_text_check(text, strlen(text), NULL, f, 8), 3);
    s_assert_finding(&f[0], BRG_TEXT_RULE_DOUBLE_SPACE, 3, 2, 1, 4, "2 spaces in a row");
    s_assert_finding(&f[1], BRG_TEXT_RULE_DOUBLE_SPACE, 9, 3, 1, 10, "3 spaces in a row");
    s_assert_finding(&f[2], BRG_TEXT_RULE_DOUBLE_SPACE, 30, 2, 2, 13, "2 spaces in a row");
}
END_TEST

START_TEST(test_text_check_finds_sentences_that_start_lowercase)
{
    const char *text = "hello there. All good. oh no!\n\nyes. 3 cats sleep.";
    brg_text_finding_t f[8];
    ck_assert_int_eq(brg_text_check(text, strlen(text), NULL, f, 8), 3);
    s_assert_finding(&f[0], BRG_TEXT_RULE_CAPITAL, 0, 5, 1, 1,
                     "sentence starts with a lowercase letter: \"hello\"");
    s_assert_finding(&f[1], BRG_TEXT_RULE_CAPITAL, 23, 2, 1, 24,
                     "sentence starts with a lowercase letter: \"oh\"");
    s_assert_finding(&f[2], BRG_TEXT_RULE_CAPITAL, 31, 3, 3, 1,
                     "sentence starts with a lowercase letter: \"yes\"");
}
END_TEST

START_TEST(test_text_check_hints_at_passive_voice)
{
    const char *text = "The report was written by Ann. Mistakes were made. The cat is tired. "
                       "She is indeed right. They are walking.";
    brg_text_finding_t f[8];
    ck_assert_int_eq(brg_text_check(text, strlen(text), NULL, f, 8), 3);
    s_assert_finding(&f[0], BRG_TEXT_RULE_PASSIVE, 11, 11, 1, 12, "passive voice? \"was written\"");
    size_t at = s_at(text, "were made");
    s_assert_finding(&f[1], BRG_TEXT_RULE_PASSIVE, at, 9, 1, (int)at + 1,
                     "passive voice? \"were made\"");
    at = s_at(text, "is tired");
    s_assert_finding(&f[2], BRG_TEXT_RULE_PASSIVE, at, 8, 1, (int)at + 1,
                     "passive voice? \"is tired\"");
}
END_TEST

START_TEST(test_text_check_sorts_findings_by_offset_then_rule_and_counts_past_max)
{
    const char *text = "an user was made.";
    brg_text_finding_t f[3];
    ck_assert_int_eq(brg_text_check(text, strlen(text), NULL, f, 3), 3);
    ck_assert_int_eq(f[0].rule, BRG_TEXT_RULE_A_AN);
    ck_assert_uint_eq(f[0].offset, 0);
    ck_assert_int_eq(f[1].rule, BRG_TEXT_RULE_CAPITAL);
    ck_assert_uint_eq(f[1].offset, 0);
    ck_assert_int_eq(f[2].rule, BRG_TEXT_RULE_PASSIVE);
    ck_assert_uint_eq(f[2].offset, 8);

    brg_text_finding_t one[1];
    memset(one, 0x5a, sizeof(one));
    ck_assert_int_eq(brg_text_check(text, strlen(text), NULL, one, 1), 3);
    ck_assert_int_eq(one[0].rule, BRG_TEXT_RULE_A_AN);
}
END_TEST

START_TEST(test_text_functions_refuse_bad_arguments_and_oversized_texts)
{
    brg_text_stats_t st;
    brg_text_span_t s[1];
    ck_assert_int_eq(brg_text_analyse(NULL, 3, &st), BRG_EINVAL);
    ck_assert_int_eq(brg_text_sentences("a.", 2, NULL, 1), BRG_EINVAL);
    ck_assert_int_eq(brg_text_keywords("a.", 2, NULL, 1), BRG_EINVAL);
    // The size is checked before the text is read.
    ck_assert_int_eq(brg_text_summarise("a.", (size_t)BRG_TEXT_MAX + 1, 1, s), BRG_EMSGSIZE);
    ck_assert_str_eq(brg_text_rule_name((brg_text_rule_t)99), "unknown");
}
END_TEST

Suite *
text_suite(void)
{
    Suite *s = suite_create("text");
    TCase *words = tcase_create("words and sentences");
    tcase_set_timeout(words, 10);
    tcase_add_test(words, test_text_syllables_follow_the_documented_heuristic);
    tcase_add_test(words, test_text_analyse_counts_words_sentences_and_flesch_scores);
    tcase_add_test(words,
                   test_text_sentences_end_at_punctuation_and_blank_lines_but_not_abbreviations);
    tcase_add_test(words, test_text_keywords_drop_stop_words_and_break_ties_alphabetically);
    tcase_add_test(words, test_text_summarise_keeps_the_best_sentences_in_their_original_order);
    tcase_add_test(words, test_text_summarise_takes_headings_and_short_sentences_only_to_fill_in);
    tcase_add_test(words, test_text_functions_refuse_bad_arguments_and_oversized_texts);
    suite_add_tcase(s, words);

    TCase *style = tcase_create("style rules");
    tcase_set_timeout(style, 10);
    tcase_add_test(style, test_text_check_finds_repeated_words_but_not_across_punctuation);
    tcase_add_test(style, test_text_check_finds_sentences_longer_than_the_limit);
    tcase_add_test(style, test_text_check_a_an_follows_the_sound_with_its_exceptions);
    tcase_add_test(style, test_text_check_finds_double_spaces_between_words_but_not_indentation);
    tcase_add_test(style, test_text_check_finds_sentences_that_start_lowercase);
    tcase_add_test(style, test_text_check_hints_at_passive_voice);
    tcase_add_test(style, test_text_check_sorts_findings_by_offset_then_rule_and_counts_past_max);
    suite_add_tcase(s, style);
    return s;
}

int
main(void)
{
    return tu_run(text_suite());
}
