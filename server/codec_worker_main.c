/*
 * codec_worker_main.c - yingyun-codec-worker: the decoder process that
 * `yingyun serve` starts (server/sandbox/sandbox.h). It links every codec,
 * GDCM included, which the server process itself does not load.
 */
#include "core/common.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "sandbox/sandbox.h"
#include "core/banned.h"

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc != 2 || strcmp(argv[1], "codec-worker") != 0) {
        fprintf(stderr, "yingyun-codec-worker: started by `yingyun serve`, not by hand\n");
        return 2;
    }
    return sandbox_worker_main(3);
}
