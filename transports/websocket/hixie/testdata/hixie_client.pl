#!/usr/bin/perl
# An independent hixie client for interop_test.go, built on Protocol::WebSocket
# (CPAN; Debian package libprotocol-websocket-perl), which checks the server's
# hixie-76 answer (the MD5 of the keys) itself.
#
# Usage: hixie_client.pl ws://HOST:PORT/PATH VERSION
#   VERSION is draft-ietf-hybi-00 (= hixie-76) or draft-hixie-75.
# Reads one hex-encoded message per line on standard input, sends each as a
# text frame and waits for its echo. Prints, one per line:
#   origin VALUE       the Origin the server echoed
#   location VALUE     the Location the server answered
#   echo HEX           each echoed message, hex-encoded
#   closed             the server answered the closing handshake 0xFF 0x00
#                      and then closed TCP
# Exits non-zero, with the reason on standard error, on any failure.
use strict;
use warnings;
use IO::Socket::INET;
use Protocol::WebSocket::Handshake::Client;
use Protocol::WebSocket::Frame;

$| = 1;
my ($url, $version) = @ARGV;
die "usage: $0 URL VERSION\n" unless defined $version;
my ($host, $port) = $url =~ m{^ws://([^/:]+):(\d+)}
    or die "want ws://HOST:PORT/..., got $url\n";

local $SIG{ALRM} = sub { die "timed out\n" };
alarm 20;

my $sock = IO::Socket::INET->new(
    PeerAddr => $host,
    PeerPort => $port,
    Proto    => 'tcp',
) or die "connect $host:$port: $!\n";
binmode $sock;

sub send_all {
    my ($bytes) = @_;
    while (length $bytes) {
        my $n = syswrite($sock, $bytes);
        die "write: $!\n" unless defined $n;
        substr($bytes, 0, $n, '');
    }
}

my $hs = Protocol::WebSocket::Handshake::Client->new(url => $url, version => $version);
send_all($hs->to_string);

my $rest = '';
until ($hs->is_done) {
    my $n = sysread($sock, my $chunk, 65536);
    die "handshake: read: " . (defined $n ? "server closed" : $!) . "\n" unless $n;
    # parse() leaves in $chunk what follows the handshake, if anything.
    $hs->parse($chunk) or die "handshake: " . $hs->error . "\n";
    $rest = $chunk if $hs->is_done;
}
my $res = $hs->res;
die "server answered $version with " . $res->version . "\n" unless $res->version eq $version;
print "origin ", ($res->origin // ''), "\n";
print "location ", ($res->location // ''), "\n";

my $frames = Protocol::WebSocket::Frame->new(version => $version);
$frames->append($rest) if length $rest;

# next_frame returns ('text', BYTES), ('close') or ('eof').
sub next_frame {
    while (1) {
        my $bytes = $frames->next_bytes;
        if (defined $bytes) {
            return ('close') if $frames->is_close;
            return ('text', $bytes);
        }
        my $n = sysread($sock, my $chunk, 65536);
        die "read: $!\n" unless defined $n;
        return ('eof') if $n == 0;
        $frames->append($chunk);
    }
}

while (my $line = <STDIN>) {
    chomp $line;
    my $msg = pack 'H*', $line;    # bytes, sent as they are
    send_all(Protocol::WebSocket::Frame->new(version => $version, buffer => $msg)->to_bytes);
    my ($kind, $bytes) = next_frame();
    die "waiting for an echo, got $kind\n" unless $kind eq 'text';
    print "echo ", unpack('H*', $bytes), "\n";
}

send_all(Protocol::WebSocket::Frame->new(version => $version, type => 'close')->to_bytes);
my ($kind) = next_frame();
die "after sending 0xFF 0x00, got $kind, want the server's 0xFF 0x00\n" unless $kind eq 'close';
($kind) = next_frame();
die "after the closing handshake, got $kind, want TCP closed\n" unless $kind eq 'eof';
print "closed\n";
close $sock;
exit 0;
