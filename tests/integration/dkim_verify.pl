#!/usr/bin/perl
# dkim_verify.pl - check signed messages with Mail::DKIM, keys from files
#
#   dkim_verify.pl ZONE.txt... -- MESSAGE...
#
# The second opinion next to dkim_verify.py: Mail::DKIM's verifier, with
# its DNS query replaced by an answer built from the zone-file records
# (selector = first label of the owner name), so nothing reaches DNS.
# Every signature of a known selector whose algorithm this Mail::DKIM
# supports must pass; one it does not support (ed25519-sha256 before
# Mail::DKIM 1.20230630) is reported as SKIP. A message with no
# signature of ours fails. Prints one line per signature, exits 1 on any
# failure. Debian's libmail-dkim-perl.
use strict;
use warnings;

use Mail::DKIM::Verifier;
use Net::DNS::RR;

my %records;
my @messages;
my $seen_sep = 0;
for my $arg (@ARGV) {
    if ($arg eq '--') { $seen_sep = 1; next; }
    if ($seen_sep) { push @messages, $arg; next; }
    open(my $fh, '<', $arg) or die "$arg: $!\n";
    local $/;
    my $text = <$fh>;
    close($fh);
    my ($owner) = $text =~ /^(\S+)/;
    my ($selector) = split(/\./, $owner);
    my ($inside) = $text =~ /\((.*)\)/s;
    my @strings = $inside =~ /"((?:[^"\\]|\\.)*)"/g;
    $records{$selector} = join('', @strings);
}
die "usage: dkim_verify.pl ZONE... -- MESSAGE...\n" unless $seen_sep && @messages;

{
    no warnings 'redefine';
    *Mail::DKIM::DNS::query = sub {
        my ($name, $type) = @_;
        my ($label) = split(/\./, $name);
        return () unless $type eq 'TXT' && exists $records{$label};
        my $rec = $records{$label};
        my @chunks = ($rec =~ /(.{1,255})/gs);
        return (Net::DNS::RR->new(name => $name, type => 'TXT',
                                  txtdata => \@chunks));
    };
}

my $failed = 0;
for my $path (@messages) {
    (my $name = $path) =~ s{.*/}{};
    open(my $fh, '<:raw', $path) or die "$path: $!\n";
    my $dkim = Mail::DKIM::Verifier->new();
    while (my $line = <$fh>) {
        $line =~ s/\r?\n\z/\r\n/;
        $dkim->PRINT($line);
    }
    close($fh);
    $dkim->CLOSE();
    my $ours = 0;
    for my $sig ($dkim->signatures) {
        my $sel = $sig->selector // '';
        next unless exists $records{$sel};
        $ours++;
        my $alg = $sig->algorithm // '';
        my $result = $sig->result // 'none';
        my $detail = $sig->result_detail // '';
        if ($result ne 'pass' && $detail =~ /unsupported|algorithm/i
            && $alg =~ /ed25519/) {
            print "SKIP $name s=$sel a=$alg ($detail)\n";
            next;
        }
        print(($result eq 'pass' ? 'PASS' : 'FAIL'),
              " $name s=$sel a=$alg", ($result eq 'pass' ? '' : " ($detail)"),
              "\n");
        $failed++ if $result ne 'pass';
    }
    if ($ours == 0) {
        print "FAIL $name: no signature of ours\n";
        $failed++;
    }
}
exit($failed ? 1 : 0);
