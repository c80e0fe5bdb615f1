#include <stdio.h>
#include <string.h>

#include "bench.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "worker") == 0)
        return bench_worker_main(argc >= 3 && strcmp(argv[2], "light") == 0);
    if (argc >= 2 && strcmp(argv[1], "count") == 0)
        return bench_count_main(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "mem") == 0)
        return bench_mem_main(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return bench_driver_main(argc - 2, argv + 2);
    fprintf(stderr, "usage: %s run [--quick] --shim LIB --out DIR | worker [light] | count LOOP N | mem VARIANT N\n",
            argv[0]);
    return 2;
}
