/* Placeholder: the score_device suite lands with its stage. */
#include <stdio.h>

int main(void)
{
    printf("1..0 # SKIP score_device: stage not implemented yet\n");
    return 77;
}
