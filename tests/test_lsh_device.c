/* Placeholder: the lsh_device suite lands with its stage. */
#include <stdio.h>

int main(void)
{
    printf("1..0 # SKIP lsh_device: stage not implemented yet\n");
    return 77;
}
