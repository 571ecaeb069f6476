/* Fails as a test that needs the current user's name fails where the uid has none: Bazel's test
 * runner sets USER from `whoami`, which then gives nothing, and getpwuid finds nothing either. */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void)
{
    const char *user = getenv("USER");
    struct passwd *pw = getpwuid(getuid());
    if (!user || !*user || !pw) {
        printf("FAIL: USER='%s', getpwuid(%u) %s\n", user ? user : "", (unsigned)getuid(),
               pw ? pw->pw_name : "found nothing");
        return 1;
    }
    printf("user_test: USER=%s name=%s home=%s\n", user, pw->pw_name, pw->pw_dir);
    return 0;
}
