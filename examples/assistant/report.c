//  report - the plain C around the assistant's actors: the text backend's
//  answers as JSON, a report as Markdown, and the check of a JSON report.
#include "report.h"

#include <brigade.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

const char *const part_name[KINDS] = {"analysis", "summary", "style"};

//  ---------------------------------------------------------------------------
//  The backend's answers: each specialist turns a text into a JSON object.

static json_t *
analyse(const char *text, size_t len)
{
    brg_text_stats_t st;
    brg_text_keyword_t top[5];
    int n = brg_text_keywords(text, len, top, 5);
    if (n < 0 || brg_text_analyse(text, len, &st) != BRG_OK)
        return NULL;
    json_t *keywords = json_array();
    for (int i = 0; i < n && i < 5; i++) {
        json_t *kw = json_object();
        json_object_set_new(kw, "word", json_string(top[i].word));
        json_object_set_new(kw, "count", json_integer((json_int_t)top[i].count));
        json_array_append_new(keywords, kw);
    }
    json_t *result = json_object();
    json_object_set_new(result, "words", json_integer((json_int_t)st.words));
    json_object_set_new(result, "sentences", json_integer((json_int_t)st.sentences));
    json_object_set_new(result, "syllables", json_integer((json_int_t)st.syllables));
    json_object_set_new(result, "words_per_sentence", json_real(st.words_per_sentence));
    json_object_set_new(result, "reading_ease", json_real(st.reading_ease));
    json_object_set_new(result, "grade", json_real(st.grade));
    json_object_set_new(result, "keywords", keywords);
    return result;
}

static json_t *
summarise(const char *text, size_t len)
{
    brg_text_span_t best[3];
    int n = brg_text_summarise(text, len, 3, best);
    if (n < 0)
        return NULL;
    json_t *sentences = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(sentences, json_stringn(text + best[i].offset, best[i].length));
    json_t *result = json_object();
    json_object_set_new(result, "sentences", sentences);
    return result;
}

static json_t *
check(const char *text, size_t len)
{
    brg_text_finding_t found[50];
    int n = brg_text_check(text, len, NULL, found, 50);
    if (n < 0)
        return NULL;
    json_t *findings = json_array();
    for (int i = 0; i < n && i < 50; i++) {
        json_t *f = json_object();
        json_object_set_new(f, "rule", json_string(brg_text_rule_name(found[i].rule)));
        json_object_set_new(f, "line", json_integer(found[i].line));
        json_object_set_new(f, "column", json_integer(found[i].column));
        json_object_set_new(f, "message", json_string(found[i].message));
        json_array_append_new(findings, f);
    }
    json_t *result = json_object();
    json_object_set_new(result, "count", json_integer(n));
    json_object_set_new(result, "findings", findings);
    return result;
}

json_t *
report_work(int kind, const char *text, size_t len)
{
    static json_t *(*const work[KINDS])(const char *, size_t) = {analyse, summarise, check};
    return work[kind](text, len);
}

json_t *
report_model(const brg_model_reply_t *reply)
{
    json_t *result = json_object();
    if (!result || json_object_set_new(result, "text", json_stringn(reply->text, reply->len)) ||
        json_object_set_new(result, "backend", json_stringn(reply->backend, reply->backend_len)) ||
        json_object_set_new(result, "model", json_stringn(reply->model, reply->model_len))) {
        json_decref(result); // a string was not valid UTF-8, or out of memory
        return NULL;
    }
    return result;
}

//  Print a model's answer, each of its lines quoted.
static void
print_model_part(const char *name, const json_t *part)
{
    const char *model = json_string_value(json_object_get(part, "model"));
    printf("- %s (by the model %s):\n", name, model ? model : "?");
    const char *text = json_string_value(json_object_get(part, "text"));
    while (text && *text) {
        size_t line = strcspn(text, "\n");
        if (line > 0)
            printf("  > %.*s\n", (int)line, text);
        text += line + (text[line] == '\n');
    }
}

//  ---------------------------------------------------------------------------
//  Reports: {"document", "analysis", "summary", "style", "elapsed_ms"}, each
//  part {"status": "ok", ...the answer} or {"status": "missing", "reason"}.

void
report_print_markdown(const json_t *report)
{
    printf("## %s\n\n", json_string_value(json_object_get(report, "document")));
    for (int k = 0; k < KINDS; k++) {
        const json_t *part = json_object_get(report, part_name[k]);
        const char *status = json_string_value(json_object_get(part, "status"));
        if (!status || strcmp(status, "ok") != 0) {
            printf("- %s: missing (%s)\n", part_name[k],
                   json_string_value(json_object_get(part, "reason")));
            continue;
        }
        if (json_object_get(part, "text")) {
            print_model_part(part_name[k], part);
        } else if (k == ANALYSER) {
            printf("- analysis: %lld words in %lld sentences (%.1f words each), %lld syllables; "
                   "Flesch reading ease %.1f, grade %.1f\n- keywords:",
                   (long long)json_integer_value(json_object_get(part, "words")),
                   (long long)json_integer_value(json_object_get(part, "sentences")),
                   json_real_value(json_object_get(part, "words_per_sentence")),
                   (long long)json_integer_value(json_object_get(part, "syllables")),
                   json_real_value(json_object_get(part, "reading_ease")),
                   json_real_value(json_object_get(part, "grade")));
            const json_t *keywords = json_object_get(part, "keywords");
            for (size_t i = 0; i < json_array_size(keywords); i++) {
                const json_t *kw = json_array_get(keywords, i);
                printf("%s %s (%lld)", i ? "," : "", json_string_value(json_object_get(kw, "word")),
                       (long long)json_integer_value(json_object_get(kw, "count")));
            }
            printf("\n");
        } else if (k == SUMMARISER) {
            printf("- summary:\n");
            const json_t *sentences = json_object_get(part, "sentences");
            for (size_t i = 0; i < json_array_size(sentences); i++)
                printf("  > %s\n", json_string_value(json_array_get(sentences, i)));
        } else {
            printf("- style: %lld findings\n",
                   (long long)json_integer_value(json_object_get(part, "count")));
            const json_t *findings = json_object_get(part, "findings");
            for (size_t i = 0; i < json_array_size(findings); i++) {
                const json_t *f = json_array_get(findings, i);
                printf("  - %lld:%lld %s: %s\n",
                       (long long)json_integer_value(json_object_get(f, "line")),
                       (long long)json_integer_value(json_object_get(f, "column")),
                       json_string_value(json_object_get(f, "rule")),
                       json_string_value(json_object_get(f, "message")));
            }
        }
    }
    printf("\n");
}

int
report_check_file(const char *path)
{
    json_error_t error;
    json_t *root = json_load_file(path, 0, &error);
    if (!root) {
        fprintf(stderr, "%s:%d:%d: %s\n", path, error.line, error.column, error.text);
        return 1;
    }
    const json_t *documents = json_object_get(root, "documents");
    bool ok = json_array_size(documents) > 0 && json_object_get(root, "timing");
    for (size_t i = 0; i < json_array_size(documents); i++) {
        const json_t *report = json_array_get(documents, i);
        ok = ok && json_is_string(json_object_get(report, "document"));
        for (int k = 0; k < KINDS; k++)
            ok = ok &&
                 json_is_string(json_object_get(json_object_get(report, part_name[k]), "status"));
    }
    printf("%s: %s (%zu documents)\n", path, ok ? "a valid report" : "not a report",
           json_array_size(documents));
    json_decref(root);
    return ok ? 0 : 1;
}
