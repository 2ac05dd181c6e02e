//  model_server - runs a program against a test OpenAI-compatible server.
//
//    model_server [--status=N] [--delay=MS] -- PROGRAM [ARGS...]
//
//  Starts a chat-completions server on 127.0.0.1 (tests/http_test_server.h), runs
//  PROGRAM with BRG_MODEL_URL (and a dummy BRG_MODEL_KEY) pointing at it, and
//  exits with PROGRAM's status, or 1 if PROGRAM never asked the server. The
//  server answers a summary prompt with "Test summary of a <n>-byte text.", a
//  copy-editing prompt with "line 1: test finding", anything else with
//  "test answer"; --status makes it answer with that HTTP status and an
//  OpenAI-style error body instead, --delay waits first. CTest uses it to run
//  examples/assistant with its HTTP backend configured.
#include "http_test_server.h"

#include <jansson.h>
#include <sys/wait.h>

static int status_code = 200, delay_ms = 0;

static void
handler(const tu_http_req_t *req, tu_http_resp_t *resp, void *arg)
{
    (void)arg;
    resp->delay_ms = delay_ms;
    if (strcmp(req->method, "POST") != 0 || !strstr(req->path, "/chat/completions")) {
        resp->status = 404;
        return;
    }
    if (status_code != 200) {
        resp->status = status_code;
        resp->body = strdup("{\"error\":{\"message\":\"the test server was told to fail\"}}");
        return;
    }
    json_t *root = json_loadb(req->body, req->body_len, 0, NULL);
    json_t *messages = json_object_get(root, "messages");
    const char *system = json_string_value(json_object_get(json_array_get(messages, 0), "content"));
    size_t user_len = json_string_length(json_object_get(json_array_get(messages, 1), "content"));
    char answer[128];
    if (!root) {
        resp->status = 400;
        resp->body = strdup("{\"error\":{\"message\":\"the request body is not JSON\"}}");
        return;
    }
    if (system && strstr(system, "summar"))
        snprintf(answer, sizeof answer, "Test summary of a %zu-byte text.", user_len);
    else if (system && strstr(system, "copy editor"))
        snprintf(answer, sizeof answer, "line 1: test finding");
    else
        snprintf(answer, sizeof answer, "test answer");
    json_decref(root);
    json_t *reply =
        json_pack("{s:s, s:s, s:[{s:i, s:{s:s, s:s}, s:s}], s:{s:i, s:i}}", "object",
                  "chat.completion", "model", "test-model-1", "choices", "index", 0, "message",
                  "role", "assistant", "content", answer, "finish_reason", "stop", "usage",
                  "prompt_tokens", (int)user_len / 4, "completion_tokens", 8);
    resp->body = json_dumps(reply, JSON_COMPACT);
    json_decref(reply);
}

int
main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--status=", 9) == 0)
            status_code = atoi(argv[i] + 9);
        else if (strncmp(argv[i], "--delay=", 8) == 0)
            delay_ms = atoi(argv[i] + 8);
        else
            break;
    }
    if (i >= argc - 1 || strcmp(argv[i], "--") != 0) {
        fprintf(stderr, "usage: %s [--status=N] [--delay=MS] -- PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    json_object_seed(0);
    tu_http_server_t *server = tu_http_server_start(handler, NULL);
    if (!server) {
        perror("model_server: cannot listen on 127.0.0.1");
        return 1;
    }
    char url[64];
    tu_http_server_url(server, url, sizeof url, "/v1");
    setenv("BRG_MODEL_URL", url, 1);
    setenv("BRG_MODEL_KEY", "sk-test", 1);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[i + 1], argv + i + 1);
        perror("model_server: exec");
        _exit(127);
    }
    int wstatus = 0;
    if (pid < 0 || waitpid(pid, &wstatus, 0) != pid) {
        perror("model_server: fork/wait");
        return 1;
    }
    int served = tu_http_server_last(server, NULL, NULL, 0);
    tu_http_server_stop(&server);
    fprintf(stderr, "model_server: served %d requests\n", served);
    if (served == 0) {
        fprintf(stderr, "model_server: the program never asked the model\n");
        return 1;
    }
    return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 1;
}
