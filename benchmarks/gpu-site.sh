# shellcheck shell=bash
# Sourced by the GPU scripts (gpu-carry.sh where PyPI is reachable; gpu-machine.sh and
# gpu-serve-check.sh on the GPU machine). Sourcing only defines; nothing runs until a function is called:
#   GPU_CARRY_DEFAULT    the carry folder, relative to the checkout: the one place that names it.
#                        gpu-carry.sh fills it, gpu-machine.sh and gpu-serve-check.sh read it (CARRY
#                        overrides it). Git-ignored (.gitignore), so it travels to the GPU machine as a
#                        carried path, not as part of the working tree.
#   GPU_TRANSFER_LIMIT   bytes the device tool sends at most: the checkout's working tree (tracked files
#                        and untracked ones that git does not ignore) plus the carried folders, 64 MiB
#   gpu_transfer_check REPO [CARRY...]   whether that transfer fits; fails naming the biggest parts
#   gpu_site_install     (GPU machine) vaani and the tritonserver parts of $CARRY/site.tar.xz under /tmp/site
#   gpu_carry_subsets CARRY [RECORDINGS]   CARRY/engine, CARRY/served, CARRY/stream: what one run carries
# Bash 4 or newer (associative arrays), GNU coreutils and git.
# shellcheck disable=SC2034  # read by the scripts that source this file
GPU_CARRY_DEFAULT=.gpubench/c2
GPU_TRANSFER_LIMIT=${GPU_TRANSFER_LIMIT:-$((64 * 1024 * 1024))}

gpu_mib() { awk -v b="$1" 'BEGIN { printf (b % 1048576 ? "%.1f MiB" : "%d MiB"), b / 1048576 }'; }

# Sums what the device tool would send for checkout REPO with the folders CARRY... carried: prints the
# total and returns 0 when it is within GPU_TRANSFER_LIMIT; otherwise names the biggest parts and how
# to leave them out on stderr and returns 1 (2: REPO is not a git checkout). Sizes are apparent sizes
# (what a copy sends, sparse or not); a carried file that is also in the working tree counts once.
gpu_transfer_check() {
  local repo kind carry rel size fsize type path top label total=0 tree=0 carried=0 summary
  local -a which
  local -A seen=() tracked=() untracked=() carry_parts=()
  repo=$(git -C "${1:?gpu_transfer_check REPO [CARRY...]}" rev-parse --show-toplevel 2>/dev/null) || {
    echo "gpu transfer: $1 is not a git checkout (the device tool sends a git working tree)" >&2
    return 2
  }
  shift
  # Tracked files that exist (a deleted one does not travel), then untracked ones that git does not
  # ignore. A submodule or nested repository is a directory entry here and travels without its files.
  for kind in tracked untracked; do
    which=(-c)
    [ "$kind" = tracked ] || which=(-o --exclude-standard)
    while IFS=$'\t' read -r -d '' size type path; do
      [ "$type" = directory ] && continue
      [ -n "${seen[$path]+x}" ] && continue
      seen[$path]=1
      top=${path%%/*}
      [ "$top" = "$path" ] || top+=/
      if [ "$kind" = tracked ]; then
        tracked[$top]=$(( ${tracked[$top]:-0} + size ))
      else
        untracked[$top]=$(( ${untracked[$top]:-0} + size ))
      fi
      tree=$((tree + size))
    done < <(cd "$repo" && git ls-files -z "${which[@]}" | xargs -0 -r stat --printf '%s\t%F\t%n\0' -- 2>/dev/null)
  done
  for carry in "$@"; do
    [ -e "$carry" ] || continue
    carry=$(realpath "$carry")
    rel=${carry#"$repo"/}
    [ "$carry" = "$repo" ] && rel=.
    size=0
    while IFS=$'\t' read -r -d '' fsize path; do
      path=${path#"$repo"/}
      [ -n "${seen[$path]+x}" ] && continue
      seen[$path]=1
      size=$((size + fsize))
    done < <(find "$carry" \( -type f -o -type l \) -printf '%s\t%p\0')
    carry_parts[$rel]=$(( ${carry_parts[$rel]:-0} + size ))
    carried=$((carried + size))
  done
  total=$((tree + carried))
  summary="checkout $(gpu_mib "$tree")"
  for rel in "${!carry_parts[@]}"; do summary+=", carry $rel $(gpu_mib "${carry_parts[$rel]}")"; done
  if [ "$total" -le "$GPU_TRANSFER_LIMIT" ]; then
    echo "gpu transfer: $(gpu_mib "$total") of $(gpu_mib "$GPU_TRANSFER_LIMIT") ($summary)"
    return 0
  fi
  local -a rows fix_untracked=() fix_tracked=() fix_carried=()
  mapfile -t rows < <({
    for top in "${!untracked[@]}"; do printf '%s\t%s\t%s\n' "${untracked[$top]}" untracked "$top"; done
    for top in "${!tracked[@]}"; do printf '%s\t%s\t%s\n' "${tracked[$top]}" tracked "$top"; done
    for rel in "${!carry_parts[@]}"; do printf '%s\t%s\t%s\n' "${carry_parts[$rel]}" carried "$rel"; done
  } | sort -t$'\t' -k1,1nr | head -5)
  {
    echo "gpu transfer: $(gpu_mib "$total") is over the device tool's $(gpu_mib "$GPU_TRANSFER_LIMIT") ($summary)."
    echo "It sends the checkout's tracked files, its untracked files that git does not ignore and the"
    echo "carried folders. The biggest parts:"
    for label in "${rows[@]}"; do
      IFS=$'\t' read -r size kind path <<<"$label"
      case $kind in
        untracked) fix_untracked+=("$path"); label="untracked, not git-ignored" ;;
        tracked) fix_tracked+=("$path"); label=tracked ;;
        carried) fix_carried+=("$path"); label=carried ;;
      esac
      printf '  %10s  %s  (%s)\n' "$(gpu_mib "$size")" "$path" "$label"
    done
    echo "To fix:"
    if [ "${#fix_untracked[@]}" -gt 0 ]; then
      echo "  - ${fix_untracked[*]}: untracked and not ignored, so it travels; if the GPU machine does not"
      echo "    need it, move it out of the checkout or git-ignore it:"
      for path in "${fix_untracked[@]}"; do echo "      echo '/$path' >> $repo/.gitignore"; done
    fi
    [ "${#fix_tracked[@]}" -eq 0 ] ||
      echo "  - ${fix_tracked[*]}: tracked, so it travels while it is in git's index"
    [ "${#fix_carried[@]}" -eq 0 ] ||
      echo "  - ${fix_carried[*]}: carried; remove stale files from it or carry less (gpu-carry.sh without MANIFEST leaves out eval.npz)"
  } >&2
  return 1
}

# The carry split by purpose, as folders of hard links inside CARRY (no second copy on disk): checkout,
# site.tar.xz and everything else together are over GPU_TRANSFER_LIMIT (2026-12-05: 65 MiB), so a run
# carries the folder of what it needs. Every folder has site.tar.xz and whl/; engine/ adds eval.npz (the
# engine benchmark's transcript check), served/ perf.tar.xz (perf_analyzer's per-step breakdown beside
# Triton's statistics), stream/ RECORDINGS (gpu-streaming.sh's audio; default
# .gpubench/stream/recordings.npz of the checkout CARRY is in). Each extra is added where it exists and
# the folder with it still fits beside the checkout; otherwise the line says it was left out. Prints a
# line per folder: its path, then what it lacks.
gpu_carry_subsets() {
  local carry=${1:?gpu_carry_subsets CARRY [RECORDINGS]} recordings=${2:-} repo name dir file lacks
  repo=$(git -C "$carry" rev-parse --show-toplevel 2>/dev/null) || repo=$carry
  [ -n "$recordings" ] || recordings=$repo/.gpubench/stream/recordings.npz
  for name in engine served stream; do
    dir=$carry/$name
    rm -rf "$dir" && mkdir -p "$dir/whl"
    ln -f "$carry"/site.tar.xz "$dir"/ && ln -f "$carry"/whl/*.whl "$dir"/whl/ || return
    case $name in engine) file=$carry/eval.npz ;; served) file=$carry/perf.tar.xz ;; stream) file=$recordings ;; esac
    lacks=''
    if [ ! -f "$file" ]; then
      lacks="no $(basename "$file")"
    else
      ln -f "$file" "$dir/$(basename "$file")" 2>/dev/null || cp "$file" "$dir/"  # another file system: copy
      if ! gpu_transfer_check "$repo" "$dir" >/dev/null 2>&1; then
        rm "$dir/$(basename "$file")" && lacks="$(basename "$file") left out: over the limit beside the checkout"
      fi
    fi
    echo "$dir${lacks:+ ($lacks)}"
  done
}

# Expects REPO (the checkout) and CARRY. Puts vaani and the tritonserver parts of $CARRY/site.tar.xz
# under /tmp/site, as an install would lay them out, and gives the python-backend stub its path hook.
# shellcheck disable=SC2153  # REPO and CARRY are the caller's
gpu_site_install() {
  local sub site
  tar -xJf "$CARRY"/site.tar.xz -C /tmp
  # vaani as installed: vaani.build, .client, .loadtest, .benchmarks live in build/, client/, loadtest/, benchmarks/.
  rm -rf /tmp/site/vaani && cp -r "$REPO"/vaani /tmp/site/vaani
  for sub in build client loadtest benchmarks; do cp -r "$REPO/$sub" /tmp/site/vaani/"$sub"; done
  # tritonserver's python stub ignores PYTHONPATH but runs site.py of the environment it finds:
  # a .pth hook there (benchmarks/vaani_stub_path.py) sets its sys.path from variables that the
  # benchmark gives the server alone. Which environment the stub finds is its business, so every
  # candidate gets the hook.
  for site in $(python3 -c "import site; print(*site.getsitepackages())") \
      $(/usr/bin/python3.12 -c "import site; print(*site.getsitepackages())" 2>/dev/null || true); do
    mkdir -p "$site" && cp "$REPO"/benchmarks/vaani_stub_path.py "$site"/ && echo "import vaani_stub_path" > "$site"/vaani-stub-path.pth
  done
}
