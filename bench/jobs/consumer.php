<?php
// The benchmark's jobs consumer: does no work, acks every job, and appends
// "ack <id> <unix time> <node>" to $JOBS_LOG (one write per job, O_APPEND).
// It speaks the frames itself so the figures are Courser's, not the SDK's.
$in = STDIN;
$out = STDOUT;
$log = fopen(getenv('JOBS_LOG'), 'a');
$node = getenv('JOBS_NODE') ?: '-';
$work = (int) getenv('JOBS_WORK_US');
$ack = '{"type":2,"data":[]}';
$h = "\x14\x00" . pack('V', strlen($ack));
$answer = $h . pack('V', crc32($h)) . "\0\0" . pack('V', 0) . $ack;
while (true) {
    $hd = fread($in, 12);
    if ($hd === false || strlen($hd) < 12) {
        exit(0);
    }
    $hl = ord($hd[0]) & 0x0f;
    $flags = ord($hd[1]);
    $len = unpack('V', $hd, 2)[1];
    $opts = $hl > 3 ? fread($in, ($hl - 3) * 4) : '';
    $p = '';
    while (strlen($p) < $len) {
        $c = fread($in, $len - strlen($p));
        if ($c === false || $c === '') {
            exit(0);
        }
        $p .= $c;
    }
    if ($flags & 1) {
        if (str_contains($p, 'stop')) {
            exit(0);
        }
        $r = '{"pid":' . getmypid() . '}';
        $x = "\x13\x01" . pack('V', strlen($r));
        fwrite($out, $x . pack('V', crc32($x)) . "\0\0" . $r);
        continue;
    }
    $clen = unpack('V', $opts)[1];
    $ctx = json_decode(substr($p, 0, $clen), true);
    if ($work > 0) {
        usleep($work);
    }
    fwrite($log, 'ack ' . $ctx['id'] . ' ' . microtime(true) . ' ' . $node . "\n");
    fwrite($out, $answer);
}
