<?php
// Hello world with no SDK: a bare loop speaking the Goridge v3 worker protocol
// over pipes (PID handshake, stop, one job frame in, one response frame out),
// like echo-raw.php. The cheapest PHP side we know how to write, so bench/run's
// "courser-lean" rows show the server's own cost. Pipes and the JSON codec only.
$in = STDIN;
$out = STDOUT;
$ctx = '{"status":200,"headers":{"Content-Type":["text/plain; charset=utf-8"]}}';
$r = $ctx . "Hello, World!\n";
$hd = "\x14\x08" . pack('V', strlen($r));
$response = $hd . pack('V', crc32($hd)) . "\0\0" . pack('V', strlen($ctx)) . $r;

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
    $rest = ($hl > 3 ? ($hl - 3) * 4 : 0) + $len;
    $p = $rest > 0 ? read_exact($in, $rest) : '';
    if ($flags & 1) { // control: {"pid":N} or {"stop":true}
        if (str_contains($p, 'stop')) exit(0);
        $pid = '{"pid":' . getmypid() . '}';
        $ph = "\x13\x09" . pack('V', strlen($pid));
        fwrite($out, $ph . pack('V', crc32($ph)) . "\0\0" . $pid);
        continue;
    }
    if (ord($h[10]) !== 0) continue; // a late PONG/STOP: nothing to answer
    fwrite($out, $response);
}
