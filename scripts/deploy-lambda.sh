#!/bin/sh
# Deploys flcache-fn to AWS Lambda: the zip `flcache package lambda` built,
# as a custom runtime (provided.al2023, x86_64), inside the VPC of the cache
# (ElastiCache lives only in a VPC), then checks it with an `echo` event.
# Every AWS call is printed before it runs; DRY_RUN=1 only prints them.
#
#   scripts/deploy-lambda.sh [ZIP]             (default dist/flcache-fn-lambda.zip)
#
# Settings (environment):
#   REGION          AWS region (default: $AWS_REGION, else eu-west-1)
#   FUNCTION        function name (default flcache-fn; the driver's FLCACHE_FUNCTION)
#   MEMORY          MB (default 1769: one full vCPU; 3538 two, 10240 at most)
#   TIMEOUT         seconds (default 900, Lambda's longest: a train worker runs
#                   the whole training; clients and queries need far less)
#   SUBNETS         comma-separated subnet ids of the cache's VPC (required
#                   unless NO_VPC=1): private subnets with a route to the cache
#   SECURITY_GROUPS comma-separated security groups of the function; the
#                   cache's group must allow TCP 6379 from them
#   FLCACHE_REDIS   the cache URL the functions open (events name it too):
#                   ElastiCache with in-transit encryption:
#                     rediss://:AUTHTOKEN@master.flc.xxxxxx.euw1.cache.amazonaws.com:6379
#                   cluster mode: the configuration endpoint, rediss://...clustercfg...:6379
#   OPENBLAS_CORETYPE  when set (as on the driver: `Haswell` on this project's
#                   machines), pinned in the function's environment so its models
#                   are bit-identical to a local run's; OpenBLAS picks its kernels
#                   by CPU otherwise (the same to float rounding)
#   RESERVED        reserved concurrency (optional): the most instances at once;
#                   more invocations are throttled (HTTP 429) and the driver
#                   retries them with backoff
#   ROLE            execution role name (default flcache-fn; created if missing)
#   S3_BUCKET       upload the zip to this bucket first and deploy it from there
#                   (needed over 50 MB, e.g. `flcache package lambda --data DIR`
#                   with Fashion-MNIST); S3_KEY names the object (default the
#                   zip's file name)
#
# The driver then runs, with its own AWS credentials (lambda:InvokeFunction):
#   AWS_REGION=$REGION FLCACHE_REDIS=... flcache simulate --platform lambda ...
# from a machine that reaches the cache too (EC2 in the same VPC).
set -eu

ZIP=${1:-dist/flcache-fn-lambda.zip}
REGION=${REGION:-${AWS_REGION:-eu-west-1}}
FUNCTION=${FUNCTION:-flcache-fn}
MEMORY=${MEMORY:-1769}
TIMEOUT=${TIMEOUT:-900}
ROLE=${ROLE:-flcache-fn}
CORETYPE=""
[ -z "${OPENBLAS_CORETYPE:-}" ] || CORETYPE=",\"OPENBLAS_CORETYPE\":\"$OPENBLAS_CORETYPE\""
DRY_RUN=${DRY_RUN:-0}
S3_BUCKET=${S3_BUCKET:-}
S3_KEY=${S3_KEY:-$(basename "$ZIP")}

run() {
    # the cache URL may carry its AUTH token: never printed
    echo "+ $*" | sed -E 's#(rediss?://[^:/@]*:)[^@]*@#\1***@#g' >&2
    [ "$DRY_RUN" = 1 ] || "$@"
}

[ -f "$ZIP" ] || { echo "deploy-lambda: no $ZIP: run flcache package lambda first" >&2; exit 1; }
[ "$DRY_RUN" = 1 ] || command -v aws >/dev/null ||
    { echo "deploy-lambda: needs the AWS CLI (aws)" >&2; exit 1; }
: "${FLCACHE_REDIS:?set FLCACHE_REDIS to the cache URL the functions open}"
if [ "${NO_VPC:-0}" != 1 ]; then
    : "${SUBNETS:?set SUBNETS (the cache VPC's subnets) or NO_VPC=1}"
    : "${SECURITY_GROUPS:?set SECURITY_GROUPS (the function's groups)}"
    VPC="--vpc-config SubnetIds=$SUBNETS,SecurityGroupIds=$SECURITY_GROUPS"
else
    VPC=""
fi

ACCOUNT=123456789012
[ "$DRY_RUN" = 1 ] || ACCOUNT=$(aws sts get-caller-identity --query Account --output text)

# 1. The execution role: CloudWatch logs, and the ENIs a VPC function needs.
if [ "$DRY_RUN" = 1 ] || ! aws iam get-role --role-name "$ROLE" >/dev/null 2>&1; then
    run aws iam create-role --role-name "$ROLE" --assume-role-policy-document \
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
    run aws iam attach-role-policy --role-name "$ROLE" \
        --policy-arn arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole
    run aws iam wait role-exists --role-name "$ROLE"
    [ "$DRY_RUN" = 1 ] || sleep 10 # a new role takes a few seconds to be assumable
fi

# 2. The code: in the request (at most 50 MB), or from S3.
if [ -n "$S3_BUCKET" ]; then
    run aws s3 cp "$ZIP" "s3://$S3_BUCKET/$S3_KEY" --region "$REGION"
    UPDATE_CODE="--s3-bucket $S3_BUCKET --s3-key $S3_KEY"
    CREATE_CODE="--code S3Bucket=$S3_BUCKET,S3Key=$S3_KEY"
else
    [ "$(wc -c <"$ZIP")" -le 52428800 ] ||
        echo "deploy-lambda: $ZIP is over 50 MB: Lambda will refuse it in the request; set S3_BUCKET" >&2
    UPDATE_CODE="--zip-file fileb://$ZIP"
    CREATE_CODE="--zip-file fileb://$ZIP"
fi

# 3. The function: created, or its code and configuration updated.
# JSON, not the shorthand Variables={K=V}: a rediss:// URL may hold '=' and ','.
ENVIRONMENT="{\"Variables\":{\"FLCACHE_REDIS\":\"$FLCACHE_REDIS\",\"OPENBLAS_NUM_THREADS\":\"1\"$CORETYPE}}"
if [ "$DRY_RUN" != 1 ] && aws lambda get-function --region "$REGION" --function-name "$FUNCTION" \
        >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    run aws lambda update-function-code --region "$REGION" --function-name "$FUNCTION" \
        $UPDATE_CODE
    run aws lambda wait function-updated-v2 --region "$REGION" --function-name "$FUNCTION"
    # shellcheck disable=SC2086
    run aws lambda update-function-configuration --region "$REGION" --function-name "$FUNCTION" \
        --memory-size "$MEMORY" --timeout "$TIMEOUT" $VPC --environment "$ENVIRONMENT"
else
    # shellcheck disable=SC2086
    run aws lambda create-function --region "$REGION" --function-name "$FUNCTION" \
        --runtime provided.al2023 --architectures x86_64 --handler flcache-fn \
        --role "arn:aws:iam::$ACCOUNT:role/$ROLE" $CREATE_CODE \
        --memory-size "$MEMORY" --timeout "$TIMEOUT" $VPC --environment "$ENVIRONMENT"
fi
run aws lambda wait function-updated-v2 --region "$REGION" --function-name "$FUNCTION"

# 4. Optional: at most RESERVED instances at once (the rest is throttled).
if [ -n "${RESERVED:-}" ]; then
    run aws lambda put-function-concurrency --region "$REGION" --function-name "$FUNCTION" \
        --reserved-concurrent-executions "$RESERVED"
fi

# 5. The check: an echo event, with the log's tail (the REPORT line).
run aws lambda invoke --region "$REGION" --function-name "$FUNCTION" \
    --cli-binary-format raw-in-base64-out --payload '{"role":"echo","deployed":true}' \
    --log-type Tail --query LogResult --output text /tmp/flcache-fn-echo.json \
    >/tmp/flcache-fn-echo.log
if [ "$DRY_RUN" != 1 ]; then
    cat /tmp/flcache-fn-echo.json; echo            # {"ok":true,"result":{"echo":...},...}
    base64 -d /tmp/flcache-fn-echo.log | grep REPORT # Billed Duration, Max Memory Used
fi
echo "deployed $FUNCTION in $REGION; run the driver with: AWS_REGION=$REGION FLCACHE_FUNCTION=$FUNCTION flcache ... --platform lambda" >&2
