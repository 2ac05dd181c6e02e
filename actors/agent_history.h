//  agent_history - the message history of a conversation, and its trimming.
//
//  Internal to actors/ (and its tests): the conversation actor
//  (actors/agent.c) owns one history and touches it only on its thread.
//
//  The token estimate: 4 tokens per message, plus one
//  token per 4 bytes (rounded up) of its text, and for each tool call of an
//  assistant message one per 4 bytes of its name, arguments and id. English
//  text is about 4 bytes a token for the common tokenisers; the estimate is
//  meant for a budget, not for billing (usage counts come from the model).
//
//  The trimming rule (brg__history_trim): a turn is a user message and
//  everything after it up to the next user message (the assistant's answers,
//  its tool calls and their results). While the history is over either limit,
//  the oldest whole turn is dropped. The system message (index 0, if there
//  is one) is never dropped, nor is the newest turn (the one being answered):
//  an assistant message with tool calls and its tool results are always in
//  one turn, so they are never split.
#ifndef BRG_ACTORS_AGENT_HISTORY_H
#define BRG_ACTORS_AGENT_HISTORY_H

#include <brigade.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *id, *name, *arguments; // owned, NUL-terminated
} brg__hcall_t;

typedef struct {
    brg_conv_role_t role;
    char *content; // owned, NUL-terminated ("" when none)
    size_t len;
    brg__hcall_t *calls; // assistant: the tool calls it made (owned)
    size_t n_calls;
    char *call_id; // tool: the id of the call this answers (owned, or NULL)
    char *name;    // tool: the tool's name (owned, or NULL)
    bool is_error; // tool: the result is an error text
    size_t tokens; // the estimate of this message
} brg__hmsg_t;

typedef struct {
    brg__hmsg_t *v;
    size_t n, cap;
    size_t tokens;       // sum of v[].tokens
    size_t max_messages; // 0: no limit
    size_t max_tokens;   // 0: no limit
    uint64_t dropped;    // messages dropped by trimming, ever
} brg__history_t;

//  The estimate of one message.
size_t brg__history_estimate(const brg__hmsg_t *m);

//  Append a message: copies content (len bytes; NULL: ""), call_id and name.
//  BRG_OK or BRG_ENOMEM (history unchanged). On BRG_OK *out (if not NULL)
//  points at the new message, valid until the next change.
int brg__history_add(brg__history_t *h, brg_conv_role_t role, const char *content, size_t len,
                     const char *call_id, const char *name, bool is_error, brg__hmsg_t **out);

//  Add a tool call to the assistant message m (copies). BRG_OK or BRG_ENOMEM.
int brg__history_add_call(brg__history_t *h, brg__hmsg_t *m, const char *id, size_t id_len,
                          const char *name, size_t name_len, const char *arguments,
                          size_t arguments_len);

//  Drop messages from index `from` to the end (undoing a failed turn).
void brg__history_truncate(brg__history_t *h, size_t from);

//  Apply the trimming rule; returns the number of messages dropped.
size_t brg__history_trim(brg__history_t *h);

void brg__history_free(brg__history_t *h);

#endif
