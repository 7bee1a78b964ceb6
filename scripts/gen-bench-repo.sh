#!/usr/bin/env bash
# A large, deterministic bare git repository for benchmarks of Kiln's git capability.
#
#   scripts/gen-bench-repo.sh DEST [COMMITS=10000] [FILES=5000]
#       Create the bare repo DEST (must not exist) with branch `main`: the first commit adds FILES
#       source-like text files (1-6 KB, 25 per directory src/<area>/g<group>/m<module>/), every
#       later commit edits 1-5 of them (changed, inserted and deleted lines). Fixed author, dates
#       and random seed: the same arguments give the same commit ids on every machine.
#   scripts/gen-bench-repo.sh add-commit DEST
#       Add one more commit to `main` (edits 3 files), e.g. for a "warm fetch after one new
#       commit" benchmark. Deterministic too: the Nth added commit is the same everywhere.
#
# Prints the head commit, the commit and file counts and the size on disk.
# Needs git and perl (perl-base is part of every Debian system).
set -euo pipefail

die() { printf 'gen-bench-repo: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

AUTHOR="Kiln Bench <bench@kiln.invalid>"
EPOCH=1700000000   # the first commit's date; each commit is 10 minutes after the previous one
STEP=600

report() {
  local dest=$1 head commits files size
  head=$(git -C "$dest" rev-parse refs/heads/main)
  commits=$(git -C "$dest" rev-list --count refs/heads/main)
  files=$(git -C "$dest" ls-tree -r --name-only refs/heads/main | wc -l)
  size=$(du -sh "$dest" | cut -f1)
  printf '%s: head %s, %s commits, %s files, %s on disk\n' "$dest" "$head" "$commits" "$files" "$size"
}

# The fast-import stream of the whole history. Blobs are emitted file by file (all versions of one
# file in a row, so fast-import stores each as a small delta of the previous one, as `git gc`
# would), then the commits refer to them by mark.
generate() {
  COMMITS=$1 FILES=$2 AUTHOR=$AUTHOR EPOCH=$EPOCH STEP=$STEP perl -e '
use strict;
use warnings;
my ($ncommits, $nfiles) = ($ENV{COMMITS}, $ENV{FILES});
my ($author, $epoch, $step) = ($ENV{AUTHOR}, $ENV{EPOCH}, $ENV{STEP});
srand(20240229);   # perl >= 5.20 has its own drand48: the same sequence everywhere

my @words = qw(
  buffer cache client config context digest entry error event graph handle index input item
  job key layer manifest node output path plan plugin queue record registry request result
  run scheduler secret source stage state step store stream task token value worker workspace
);
my @types = qw(String u64 usize bool Vec<u8> Option<String> PathBuf Duration Result<()> Digest);
my @areas = qw(engine host pipeline expr cache git registry server cli sdk);

sub pick { $_[rand @_] }
sub ident { join "_", map { pick(@words) } 1 .. 1 + int rand 2 }
sub camel { join "", map { ucfirst pick(@words) } 1 .. 1 + int rand 2 }
sub line {
  my $r = rand;
  my $ind = "    " x (1 + int rand 3);
  return "${ind}let " . ident() . " = " . ident() . "(&" . ident() . ", " . int(rand 1000) . ")?;" if $r < 0.3;
  return "${ind}if " . ident() . ".is_empty() {" if $r < 0.4;
  return "${ind}}" if $r < 0.5;
  return "${ind}// " . join(" ", map { pick(@words) } 1 .. 3 + int rand 8) . "." if $r < 0.62;
  return "${ind}self." . ident() . ".insert(" . ident() . ".clone());" if $r < 0.75;
  return "${ind}return Err(Error::" . camel() . "(format!(\"" . join(" ", map { pick(@words) } 1 .. 4) . " {}\", " . ident() . ")));" if $r < 0.85;
  return "${ind}" . ident() . ": " . pick(@types) . ",";
}
sub initial_lines {
  my @l = ("// Generated for Kiln benchmarks.", "use crate::" . ident() . "::{" . camel() . ", " . camel() . "};", "");
  my $target = 1000 + int rand 5000;   # bytes
  my $len = 0;
  while ($len < $target) {
    my @block = ("pub fn " . ident() . "(" . ident() . ": &" . pick(@types) . ") -> Result<" . pick(@types) . "> {");
    push @block, line() for 1 .. 3 + int rand 12;
    push @block, "}", "";
    $len += length($_) + 1 for @block;
    push @l, @block;
  }
  return @l;
}
sub edit {   # change a few lines in place
  my ($l) = @_;
  for (1 .. 1 + int rand 3) {
    my $i = 3 + int rand(@$l - 3);
    my $r = rand;
    if ($r < 0.5) { $l->[$i] = line() }
    elsif ($r < 0.85 || @$l < 20) { splice @$l, $i, 0, map { line() } 1 .. 1 + int rand 4 }
    else { splice @$l, $i, 1 }
  }
}

# Paths: src/<area>/g<group>/m<module>/<name>.rs, 25 files per module, 4 modules per group.
my @paths;
my %seen;
for my $f (0 .. $nfiles - 1) {
  my $m = int($f / 25);
  my $dir = sprintf("src/%s/g%02d/m%03d", $areas[$m % @areas], int($m / 40), $m);
  my $p;
  do { $p = "$dir/" . ident() . ".rs" } while $seen{$p}++;
  push @paths, $p;
}

# Which files each commit (2..N) edits; per file, the commits that edit it.
my @touch;
my @versions = map { [1] } 0 .. $nfiles - 1;
for my $c (2 .. $ncommits) {
  my %t;
  $t{int rand $nfiles} = 1 for 1 .. 1 + int rand 5;
  my @t = sort { $a <=> $b } keys %t;
  $touch[$c] = \@t;
  push @{ $versions[$_] }, $c for @t;
}

# Blobs, file by file.
my $mark = 0;
my %blob;   # "commit file" -> mark
for my $f (0 .. $nfiles - 1) {
  my @l = initial_lines();
  for my $c (@{ $versions[$f] }) {
    edit(\@l) if $c > 1;
    my $data = join("\n", @l) . "\n";
    $blob{"$c $f"} = ++$mark;
    print "blob\nmark :$mark\ndata ", length($data), "\n", $data, "\n";
  }
}

# Commits.
for my $c (1 .. $ncommits) {
  my $cm = ++$mark;
  my $when = $epoch + ($c - 1) * $step;
  my @files = $c == 1 ? (0 .. $nfiles - 1) : @{ $touch[$c] };
  my $msg = $c == 1 ? "Initial import of $nfiles files\n"
    : "Change " . join(", ", map { my $p = $paths[$_]; $p =~ s{.*/}{}; $p } @files) . " (commit $c)\n";
  print "commit refs/heads/main\nmark :$cm\n";
  print "author $author $when +0000\ncommitter $author $when +0000\n";
  print "data ", length($msg), "\n$msg";
  print "M 100644 :", $blob{"$c $_"}, " $paths[$_]\n" for @files;
  print "\n";
}
print "done\n";
'
}

# One more commit on main, from the current head: 3 files edited by appending lines.
add_commit() {
  local dest=$1 count last n paths total i idx path when msg blob
  git -C "$dest" rev-parse --verify -q refs/heads/main >/dev/null || die "$dest has no branch main"
  count=$(git -C "$dest" rev-list --count refs/heads/main)
  last=$(git -C "$dest" log -1 --format=%ct refs/heads/main)
  n=$((count + 1))
  when=$((last + STEP))
  mapfile -t paths < <(git -C "$dest" ls-tree -r --name-only refs/heads/main)
  total=${#paths[@]}
  [ "$total" -gt 0 ] || die "$dest: main has no files"
  msg="Add commit $n"
  {
    printf 'commit refs/heads/main\n'
    printf 'author %s %s +0000\ncommitter %s %s +0000\n' "$AUTHOR" "$when" "$AUTHOR" "$when"
    printf 'data %s\n%s\n' "${#msg}" "$msg"
    printf 'from refs/heads/main^0\n'
    for i in 0 1 2; do
      idx=$(((n * 7919 + i * 104729) % total))
      path=${paths[$idx]}
      blob=$(git -C "$dest" cat-file blob "refs/heads/main:$path"
        printf '    // commit %s: %s line %s\n' "$n" "$path" "$i")
      printf 'M 100644 inline %s\ndata %s\n%s\n' "$path" "$(($(printf '%s\n' "$blob" | wc -c)))" "$blob"
    done
    printf '\ndone\n'
  } | git -C "$dest" fast-import --quiet --done
}

case "${1:-}" in
  "" | -h | --help) usage ;;
  add-commit)
    [ "$#" = 2 ] || usage
    add_commit "$2"
    report "$2"
    ;;
  *)
    [ "$#" -le 3 ] || usage
    dest=$1 commits=${2:-10000} files=${3:-5000}
    [[ $commits =~ ^[1-9][0-9]*$ && $files =~ ^[1-9][0-9]*$ ]] || die "COMMITS and FILES must be positive numbers"
    [ ! -e "$dest" ] || die "$dest exists (remove it first)"
    start=$(date +%s%N)
    git init -q --bare -b main "$dest"
    generate "$commits" "$files" | git -C "$dest" fast-import --quiet --done --depth=50
    report "$dest"
    ms=$((($(date +%s%N) - start) / 1000000))
    printf 'generated in %d.%03d s\n' $((ms / 1000)) $((ms % 1000))
    ;;
esac
