#!/usr/bin/env bash
# Plans every stack a pull request touches and prints ONE Markdown comment on stdout.
#   usage: plan-changed-stacks.sh BASE_REF [PROJECT_DIR]
# A stack is planned when its Pulumi.<stack>.yaml changed; when the program changed (Pulumi.yaml,
# provider/, agent/, package files, any .ts/.js of the project) every stack is planned. The worst exit
# code (2 could not run > 1 a rule fails > 0) is written as `exit=N` to $GITHUB_OUTPUT when set, and is
# this script's own exit code only with --strict (so the comment is posted first).
set -uo pipefail
base="${1:?usage: plan-changed-stacks.sh BASE_REF [PROJECT_DIR]}"
dir="${2:-.}"
cd "$dir"
marker="<!-- datasync-plan -->"
changed="$(git diff --name-only "$base"...HEAD -- . 2>/dev/null || git diff --name-only "$base" -- .)"
stacks=()
if grep -Eq '(^|/)(Pulumi\.ya?ml|package(-lock)?\.json)$|^(provider|agent)/|\.(m?[jt]s)$' <<<"$changed"; then
  for f in Pulumi.*.yaml; do [ -e "$f" ] && stacks+=("$(sed -E 's/^Pulumi\.(.+)\.yaml$/\1/' <<<"$f")"); done
else
  while read -r f; do
    [[ "$f" =~ ^Pulumi\.(.+)\.ya?ml$ ]] && [ -e "$f" ] && stacks+=("${BASH_REMATCH[1]}")
  done <<<"$changed"
fi

worst=0
echo "$marker"
echo "# datasync plan"
echo
if [ ${#stacks[@]} -eq 0 ]; then
  echo "No stack file or program change in this pull request: nothing to plan."
fi
for s in "${stacks[@]}"; do
  out="$(npx --no-install datasync plan --stack "$s" --base "$base" 2>plan-stderr.txt)"
  code=$?
  case $code in
    0) ;;
    1) [ $worst -lt 1 ] && worst=1 ;;
    *) worst=2 ;;
  esac
  if [ $code -le 1 ]; then
    echo "$out"
  else
    echo "## datasync plan: stack \`$s\`"
    echo
    echo "⛔ The plan could not run (exit $code):"
    echo
    echo '```'
    cat plan-stderr.txt
    echo '```'
  fi
  echo
done
rm -f plan-stderr.txt
echo "<sub>Updated for $(git rev-parse --short HEAD) against $(git rev-parse --short "$base"). Exit: $worst (0 the rules pass, 1 a rule fails, 2 could not run).</sub>"
[ -n "${GITHUB_OUTPUT:-}" ] && echo "exit=$worst" >>"$GITHUB_OUTPUT"
[ "${3:-}" = "--strict" ] && exit $worst
exit 0
