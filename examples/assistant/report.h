//  report - the plain C around the assistant's actors: the text backend's
//  answers as JSON, a report as Markdown, and the check of a JSON report.
//  No actors here; main.c is the actor program.
#ifndef ASSISTANT_REPORT_H
#define ASSISTANT_REPORT_H

#include <brigade.h>
#include <jansson.h>
#include <stddef.h>

//  The three specialists, and the part of a report each one writes.
enum { ANALYSER, SUMMARISER, CHECKER, KINDS };
extern const char *const part_name[KINDS]; // "analysis", "summary", "style"

//  A specialist's work: the backend's answer for the text, as a JSON object;
//  NULL if the backend failed. Caller owns the returned object (json_decref).
json_t *report_work(int kind, const char *text, size_t len);

//  A part written by a language model: its answer, backend and model name.
//  NULL if one of them is not valid UTF-8. Caller owns the returned object.
json_t *report_model(const brg_model_reply_t *reply);

//  Print one job's report, as its coordinator built it, as Markdown.
void report_print_markdown(const json_t *report);

//  Check that the file holds a report as --json writes it; print the verdict.
//  Returns 0 if it does, 1 if not.
int report_check_file(const char *path);

#endif
