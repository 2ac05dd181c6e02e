//  model_server - runs a program against a test OpenAI-compatible server.
//
//    model_server [--status=N] [--fail-first=N] [--retry-after=S] [--delay=MS]
//                 [--chunk-delay=MS] -- PROGRAM [ARGS...]
//
//  Starts a chat-completions server on 127.0.0.1 (tests/model_test_server.h:
//  it checks each request body, answers chat, tool calls and streams), runs
//  PROGRAM with BRG_MODEL_URL, a dummy BRG_MODEL_KEY and BRG_MODEL_NAME
//  "test-model-1" pointing at it, and exits with PROGRAM's status, or 1 if
//  PROGRAM never asked the server. The server answers a summary prompt with
//  "Test summary of a <n>-byte text.", a copy-editing prompt with "line 1:
//  test finding", other chats as model_test_server.h says. --status makes it
//  answer every request with that HTTP status and an OpenAI-style error body
//  instead; --fail-first=N only the first N (503 unless --status), with
//  --retry-after=S as their Retry-After; --delay waits before each answer,
//  --chunk-delay between stream events. CTest uses it to run
//  examples/assistant and ask_model with their HTTP backend configured.
#include "model_test_server.h"

#include <limits.h>
#include <sys/wait.h>

static tu_model_server_t ms = TU_MODEL_SERVER_INIT;

int
main(int argc, char **argv)
{
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strncmp(argv[i], "--status=", 9) == 0)
            ms.fail_status = atoi(argv[i] + 9), ms.fail_first = INT_MAX;
        else if (strncmp(argv[i], "--fail-first=", 13) == 0)
            ms.fail_first = atoi(argv[i] + 13);
        else if (strncmp(argv[i], "--retry-after=", 14) == 0)
            ms.retry_after = argv[i] + 14;
        else if (strncmp(argv[i], "--delay=", 8) == 0)
            ms.delay_ms = atoi(argv[i] + 8);
        else if (strncmp(argv[i], "--chunk-delay=", 14) == 0)
            ms.chunk_delay_ms = atoi(argv[i] + 14);
        else
            break;
    }
    if (i >= argc - 1 || strcmp(argv[i], "--") != 0) {
        fprintf(stderr,
                "usage: %s [--status=N] [--fail-first=N] [--retry-after=S] [--delay=MS] "
                "[--chunk-delay=MS] -- PROGRAM [ARGS...]\n",
                argv[0]);
        return 2;
    }
    json_object_seed(0);
    tu_http_server_t *server = tu_http_server_start(tu_model_handler, &ms);
    if (!server) {
        perror("model_server: cannot listen on 127.0.0.1");
        return 1;
    }
    char url[64];
    tu_http_server_url(server, url, sizeof url, "/v1");
    setenv("BRG_MODEL_URL", url, 1);
    setenv("BRG_MODEL_KEY", "sk-test", 1);
    setenv("BRG_MODEL_NAME", "test-model-1", 1);
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
