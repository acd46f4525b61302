/* `--resume JOB` of simulate and train (issue 16 point 5): a run stores its
 * arguments with each checkpoint, and a resumed run parses the job's stored
 * arguments first and its own after them (later options win), so
 * `flcache simulate --resume J` alone continues J as it was started. */
#ifndef FLC_CLI_RESUME_ARGS_H
#define FLC_CLI_RESUME_ARGS_H

/* argv[0], the stored arguments (a JSON array of strings; "" for none),
 * then argv[1..]: *argv2 (free it) points into argv and *keep (free with
 * flc_cli_resume_free). 0, or -1 when stored is not such an array. */
int flc_cli_resume_argv(const char *stored, int argc, char **argv, int *argc2, char ***argv2,
                        void **keep);
void flc_cli_resume_free(char **argv2, void *keep);

/* argv[1..] without --resume and its value, as a JSON array (malloc'd;
 * NULL when out of memory). */
char *flc_cli_resume_json(int argc, char **argv);

#endif
