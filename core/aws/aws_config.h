/*
 * Profiles from the AWS shared files (~/.aws/config and ~/.aws/credentials):
 * which files, which profile, and its merged properties. Region and endpoint
 * resolution (declared in creds.h) are built on this. Credentials logic is
 * not here (creds_profile.c).
 */
#ifndef KL_AWS_CONFIG_H
#define KL_AWS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

struct kl_env;
struct kl_err;

#define KL_AWS_PROFILE_NAME_MAX 128
#define KL_AWS_PATH_MAX 1024
#define KL_AWS_PROFILE_MAX_PROPS 128
/* Shared files larger than this are refused rather than read. */
#define KL_AWS_SHARED_FILE_MAX ((size_t)1 << 20)

enum kl_aws_file {
    KL_AWS_FILE_CONFIG = 1,      /* AWS_CONFIG_FILE, default ~/.aws/config */
    KL_AWS_FILE_CREDENTIALS = 2, /* AWS_SHARED_CREDENTIALS_FILE, default ~/.aws/credentials */
};

struct kl_aws_profile_prop {
    char *key;   /* lower-cased */
    char *value; /* wiped on free: it may be a secret */
    int rank;    /* which section it came from; higher wins */
};

/* One profile, merged from both files: a value from the credentials file wins
 * over the config file; in the config file [profile default] replaces
 * [default]. Caller-owned: kl_aws_profile_init / kl_aws_profile_free. */
struct kl_aws_profile {
    char name[KL_AWS_PROFILE_NAME_MAX];
    bool in_config;                         /* a section for it exists in the config file */
    bool in_credentials;                    /* ... in the credentials file */
    char config_path[KL_AWS_PATH_MAX];      /* "" when there is none (no HOME) */
    char credentials_path[KL_AWS_PATH_MAX]; /* "" when there is none (no HOME) */
    struct kl_aws_profile_prop props[KL_AWS_PROFILE_MAX_PROPS];
    size_t n_props;
    bool prefixed_default_seen; /* [profile default] present: [default] is ignored */
};

void kl_aws_profile_init(struct kl_aws_profile *p);
/* Wipes the values and frees them; the struct is re-initialised. */
void kl_aws_profile_free(struct kl_aws_profile *p);

/* Value of a property (name in lower case) or NULL; "" when set but empty. */
const char *kl_aws_profile_get(const struct kl_aws_profile *p, const char *key);

/* The profile to use: `explicit_name`, else AWS_PROFILE, else "default".
 * `*named` tells whether it was asked for by name (then a missing profile is
 * an error, not "nothing configured"). */
int kl_aws_profile_name(const struct kl_env *env, const char *explicit_name, char *out, size_t cap,
                        bool *named, struct kl_err *err);

/* Loads `name` from the files in `files` (a mask of enum kl_aws_file). A file
 * that does not exist is empty; one that cannot be read or parsed is an error
 * (KL_ERR_IO, KL_ERR_INVALID with file:line). `out` must be initialised. */
int kl_aws_profile_load(const struct kl_env *env, const char *name, unsigned files,
                        struct kl_aws_profile *out, struct kl_err *err);

/* Parses profile text directly (tests, and callers that have the bytes).
 * `which` is one enum kl_aws_file; `origin` names it in messages. */
int kl_aws_profile_parse(const char *text, size_t len, enum kl_aws_file which, const char *origin,
                         const char *name, struct kl_aws_profile *out, struct kl_err *err);

#endif
