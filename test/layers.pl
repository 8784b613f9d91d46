#!/usr/bin/perl
#
# test/layers.pl -- check src/ against the file map of docs/design.md.
#
# Usage: perl test/layers.pl MAP.md SRCDIR
#
# The map is the table of docs/design.md whose rows start with a layer
# number and a file: "| 2 | `src/locks.c` | ... |".  Checks that:
#   - every file of SRCDIR (*.c, *.h) is in the map, and every file in the
#     map exists;
#   - a file includes only headers of its own layer or an earlier one;
#   - an object (SRCDIR/*.o, built) refers only to symbols defined in its
#     own layer or an earlier one ("calls climb back up" otherwise);
#   - the files' references have no cycle.
# Prints each problem and a summary; exits 1 if there is any.  nm reads
# the objects, so "make" must have built them.

use strict;
use warnings FATAL => 'all';

my ($map_file, $src) = @ARGV;
die "usage: $0 MAP.md SRCDIR\n" unless defined $src && -d $src;

my %layer;
open(my $fh, '<', $map_file) or die "cannot open $map_file: $!\n";
while (my $line = <$fh>)
{
	next unless $line =~ /^\|\s*(\d+)\s*\|\s*`src\/([^`]+)`/;
	die "$map_file: src/$2 is in the map twice\n" if exists $layer{$2};
	$layer{$2} = $1;
}
close($fh);
die "$map_file: no file map found\n" unless %layer;

my @problems;
opendir(my $dh, $src) or die "cannot read $src: $!\n";
my @files = sort grep { /\.[ch]$/ } readdir($dh);
closedir($dh);
my %present = map { $_ => 1 } @files;
push @problems, "src/$_ is not in the map" for grep { !exists $layer{$_} } @files;
push @problems, "src/$_ is in the map but not in src/"
  for grep { !$present{$_} } sort keys %layer;

# Includes
for my $f (@files)
{
	next unless exists $layer{$f};
	open(my $in, '<', "$src/$f") or die "cannot open $src/$f: $!\n";
	while (my $line = <$in>)
	{
		next unless $line =~ /^\s*#\s*include\s+"([^"]+)"/;
		my $h = $1;
		next unless exists $layer{$h};
		push @problems,
		  "src/$f (layer $layer{$f}) includes src/$h (layer $layer{$h})"
		  if $layer{$h} > $layer{$f};
	}
	close($in);
}

# References between objects
my (%defined_in, %uses);
for my $c (grep { /\.c$/ } @files)
{
	(my $o = $c) =~ s/\.c$/.o/;
	die "$src/$o is missing: build first\n" unless -f "$src/$o";
	for my $line (`nm -P "$src/$o"`)
	{
		my ($sym, $type) = split ' ', $line;
		next unless defined $type;
		if ($type eq 'U') { push @{ $uses{$c} }, $sym; }
		elsif ($type =~ /^[TDBRGSV]$/) { $defined_in{$sym} = $c; }
	}
}
my %edges;
my $climbs = 0;
for my $c (sort keys %uses)
{
	for my $sym (@{ $uses{$c} })
	{
		my $d = $defined_in{$sym};
		next unless defined $d && $d ne $c;
		next unless exists $layer{$c} && exists $layer{$d};
		$edges{$c}{$d} = 1;
		if ($layer{$d} > $layer{$c})
		{
			$climbs++;
			push @problems,
			  "src/$c (layer $layer{$c}) refers to $sym of src/$d (layer $layer{$d})";
		}
	}
}

# Cycles among the files' references
my (%state, @stack);
my $cycle;
my $visit;
$visit = sub {
	my ($n) = @_;
	$state{$n} = 1;
	push @stack, $n;
	for my $m (sort keys %{ $edges{$n} || {} })
	{
		last if $cycle;
		if (($state{$m} // 0) == 1)
		{
			my @at = @stack;
			shift @at while $at[0] ne $m;
			$cycle = join(' -> ', map { "src/$_" } @at, $m);
		}
		elsif (!$state{$m}) { $visit->($m); }
	}
	pop @stack;
	$state{$n} = 2;
};
for my $n (sort keys %edges)
{
	$visit->($n) unless $state{$n} || $cycle;
}
push @problems, "a cycle of references: $cycle" if $cycle;

print "$_\n" for @problems;
printf "layers: %d files, %d references between them, %d climbing back up%s\n",
  scalar(@files), scalar(map { keys %$_ } values %edges), $climbs,
  $cycle ? ", a cycle" : ", no cycle";
exit(@problems ? 1 : 0);
