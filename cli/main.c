#include <stdio.h>
int main(void) { puts("flcache"); return 0; }
