/* bitllm formats: the weight formats the library's registry holds, with their parameters,
 * defaults, ranges and aliases — what `-m` of quantize, fit and compare accepts. */
#include <cjson/cJSON.h>
#include <stdio.h>

#include "bitllm/format.h"
#include "cli.h"
#include "cli_util.h"

int cmd_formats(int argc, char **argv) {
    bool json = false;
    const cli_opt opts[] = {
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout", CLI_ANY},
    };
    const cli_spec spec = {"formats", "",
                           "List the weight formats: a method is FORMAT[:key=value,...] with "
                           "the keys shown (e.g. rtn:bits=2,group=64) or an alias. Unset keys "
                           "take the defaults shown.",
                           opts, 1, 0, 0, NULL};
    const char *pos[1];
    int np, r = cli_parse(&spec, argc, argv, pos, &np);
    if (r != CLI_OK) return cli_exit_code(r);
    int n;
    const bl_format_ops *const *all = bl_format_list(&n);
    cJSON *root = json ? cJSON_CreateObject() : NULL, *arr = NULL;
    if (json) arr = cJSON_AddArrayToObject(root, "formats");
    for (int i = 0; i < n; i++) {
        const bl_format_ops *f = all[i];
        cJSON *jf = NULL, *jp = NULL, *ja = NULL;
        if (json) {
            jf = cJSON_CreateObject();
            cJSON_AddStringToObject(jf, "name", f->name);
            cJSON_AddStringToObject(jf, "description", f->desc ? f->desc : "");
            cJSON_AddBoolToObject(jf, "fittable", f->fit != NULL);
            jp = cJSON_AddArrayToObject(jf, "params");
            ja = cJSON_AddObjectToObject(jf, "aliases");
            cJSON_AddItemToArray(arr, jf);
        } else {
            printf("%-8s %s%s\n", f->name, f->desc ? f->desc : "", f->fit ? "" : " [not fitted]");
        }
        for (int k = 0; k < f->n_params; k++) {
            const bl_format_param *d = &f->params[k];
            if (json) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "key", d->key);
                if (d->alias) cJSON_AddStringToObject(e, "alias", d->alias);
                cJSON_AddStringToObject(e, "type", d->type == BL_FPT_BOOL ? "bool" : "int");
                cJSON_AddNumberToObject(e, "default", (double)d->def);
                cJSON_AddNumberToObject(e, "min", (double)d->lo);
                cJSON_AddNumberToObject(e, "max", (double)d->hi);
                if (d->flag >= 0)
                    cJSON_AddStringToObject(e, "option", bl_qparam_name((bl_qparam)d->flag));
                cJSON_AddStringToObject(e, "help", d->help);
                cJSON_AddItemToArray(jp, e);
            } else {
                printf("           %s%s%s%s = %lld  [%lld, %lld]  %s\n", d->key,
                       d->alias ? " (or " : "", d->alias ? d->alias : "", d->alias ? ")" : "",
                       (long long)d->def,
                       (long long)d->lo, (long long)d->hi, d->help);
            }
        }
        for (int a = 0; a < f->n_aliases; a++) {
            if (json) cJSON_AddStringToObject(ja, f->aliases[a].name, f->aliases[a].params);
            else printf("           alias %s = %s:%s\n", f->aliases[a].name, f->name,
                        f->aliases[a].params);
        }
    }
    if (json) cli_print_json(root);
    return 0;
}
