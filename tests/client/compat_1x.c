/*
 * A program written for distcache 1.x: it uses only the 1.x API and
 * compiles as C against the public header, unchanged. It is linked against
 * the shared and the static libdistcache and run against dc_server.
 *
 * Usage: compat_1x ADDRESS. Exits 0 when every operation answered as 1.x
 * documents, 1 (naming the failed check) otherwise.
 */
#include <distcache/dc_client.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if !defined(DISTCACHE_CLIENT_API) || (DISTCACHE_CLIENT_API < 0x0001)
#error "You must compile with a more recent version of the distcache-base package"
#endif

#define CHECK(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "compat_1x: line %d (flags 0x%x): %s\n", __LINE__, \
				flags, #cond);                                       \
			return 0;                                                    \
		}                                                                    \
	} while (0)

static int exercise(const char *addr, unsigned int flags)
{
	DC_CTX *ctx;
	unsigned char id[32], data[2000], buf[4096];
	unsigned int used = 0;
	unsigned int i;

	/* An id unique to this process and mode. */
	memset(id, 0, sizeof(id));
	snprintf((char *)id, sizeof(id), "compat-%ld-%u", (long)getpid(), flags);
	for (i = 0; i < sizeof(data); i++)
		data[i] = (unsigned char)(i * 13 + 1);

	ctx = DC_CTX_new(addr, flags);
	CHECK(ctx != NULL);
	CHECK(DC_CTX_has_session(ctx, id, sizeof(id)) == 0);
	CHECK(!DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used));
	CHECK(DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 60000));
	CHECK(!DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), 60000));
	CHECK(DC_CTX_has_session(ctx, id, sizeof(id)) == 1);
	CHECK(DC_CTX_get_session(ctx, id, sizeof(id), buf, sizeof(buf), &used));
	CHECK(used == sizeof(data) && memcmp(buf, data, used) == 0);
	/* A buffer too small: success, the full length, then reget. */
	memset(buf, 0, sizeof(buf));
	CHECK(DC_CTX_get_session(ctx, id, sizeof(id), buf, 10, &used));
	CHECK(used == sizeof(data));
	CHECK(DC_CTX_reget_session(ctx, id, sizeof(id), buf, sizeof(buf), &used));
	CHECK(used == sizeof(data) && memcmp(buf, data, used) == 0);
	CHECK(DC_CTX_remove_session(ctx, id, sizeof(id)));
	CHECK(!DC_CTX_remove_session(ctx, id, sizeof(id)));
	CHECK(DC_CTX_has_session(ctx, id, sizeof(id)) == 0);
	/* Below DC_MIN_TIMEOUT: refused. */
	CHECK(!DC_CTX_add_session(ctx, id, sizeof(id), data, sizeof(data), DC_MIN_TIMEOUT - 1));
	DC_CTX_free(ctx);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: compat_1x ADDRESS\n");
		return 2;
	}
	if (!exercise(argv[1], 0) ||
	    !exercise(argv[1], DC_CTX_FLAG_PERSISTENT) ||
	    !exercise(argv[1], DC_CTX_FLAG_PERSISTENT | DC_CTX_FLAG_PERSISTENT_PIDCHECK |
				       DC_CTX_FLAG_PERSISTENT_RETRY | DC_CTX_FLAG_PERSISTENT_LATE))
		return 1;
	printf("compat_1x: ok\n");
	return 0;
}
