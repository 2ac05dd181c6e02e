//  tools - the agent example's tools: a calculator and a document search.
//
//  Both are pure functions wrapped as Brigade tools (brigade/tool.h): the
//  tool functions below read the JSON arguments, do the work and write the
//  result text (or a tool error the model will read).
#ifndef AGENT_TOOLS_H
#define AGENT_TOOLS_H

#include <brigade.h>

#include <stddef.h>

//  Evaluate an arithmetic expression: numbers (digits, an optional decimal
//  point and decimals: 12, 3.5, .5), + - * /, parentheses, unary minus and
//  plus, spaces anywhere between. Usual precedence, left to right.
//  Returns 0 and *out, or -1 with a one-line reason in err ("division by
//  zero", "unexpected ')' at position 7", ...).
int calc_eval(const char *expr, double *out, char *err, size_t err_len);

//  Write a result as the calculator shows it: up to 12 significant digits,
//  no trailing zeros, "-0" as "0".
void calc_format(double value, char *buf, size_t len);

//  The calculator tool: arguments {"expression": "..."}.
void calc_tool(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out);
extern const char *const calc_tool_schema;

//  The document index: the .txt files of one folder, title (first line) and
//  body, loaded once.
typedef struct docs docs_t;

//  Load every *.txt file of dir (sorted by name). NULL with a reason in err
//  if the folder cannot be read or has no document.
docs_t *docs_load(const char *dir, char *err, size_t err_len);
void docs_free(docs_t *docs);

//  Rank the documents for the query: each query word (lowercased, words of
//  fewer than 3 letters and common stop words left out) scores its count in
//  the document (twice in the title) times log(1 + N / documents having
//  it). Writes up to max results, best first (ties: file name order), as
//  "N. Title (file.txt, score S): snippet" lines, where the snippet is the
//  first sentence holding a query word (cut at 160 bytes). Returns the
//  number of documents that matched (0: none; then nothing is written), or
//  -1 for a query with no searchable word.
int docs_search(const docs_t *docs, const char *query, int max, char *buf, size_t len);

//  The search tool: arguments {"query": "...", "max_results": N (1..5, default 3)};
//  arg is the docs_t.
void search_tool(void *arg, const brg_tool_call_t *call, brg_tool_out_t *out);
extern const char *const search_tool_schema;

#endif
