#include "core/common.h"
#include "check.h"
#include "core/banned.h"
int main(void)
{
    return check_summary();
}
