<?php
// Echo worker with no SDK: a bare loop speaking the Goridge v3 worker protocol over
// pipes (PID handshake, stop, one job frame in, one response frame out). It is the
// cheapest PHP side we know how to write, so pool-roundtrip with it measures the server.
$in = STDIN;
$out = STDOUT;
$ctx = '{"status":200,"headers":{}}';
$cl = pack('V', strlen($ctx));

function read_exact($in, int $n): string
{
    $s = fread($in, $n);
    if ($s === false) exit(0);
    while (strlen($s) < $n) {
        $more = fread($in, $n - strlen($s));
        if ($more === false || ($more === '' && feof($in))) exit(0);
        $s .= $more;
    }
    return $s;
}

while (true) {
    $h = read_exact($in, 12);
    $hl = ord($h[0]) & 0x0f;
    $flags = ord($h[1]);
    $len = unpack('V', $h, 2)[1];
    $opts = $hl > 3 ? read_exact($in, ($hl - 3) * 4) : '';
    $p = $len > 0 ? read_exact($in, $len) : '';
    if ($flags & 1) { // control: {"pid":N} or {"stop":true}
        if (str_contains($p, 'stop')) exit(0);
        $r = '{"pid":' . getmypid() . '}';
        $hd = "\x13\x09" . pack('V', strlen($r));
        fwrite($out, $hd . pack('V', crc32($hd)) . "\0\0" . $r);
        continue;
    }
    if (ord($h[10]) !== 0) continue; // a late PONG/STOP: nothing to answer
    $body = substr($p, $opts === '' ? 0 : unpack('V', $opts)[1]);
    $r = $ctx . $body;
    $hd = "\x14\x08" . pack('V', strlen($r));
    fwrite($out, $hd . pack('V', crc32($hd)) . "\0\0" . $cl . $r);
}
