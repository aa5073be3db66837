<?php
// A jobs worker (RR_MODE=jobs) for the end-to-end tests, speaking the frames
// directly so the tests judge the server. Each delivery appends one JSON line
// to $JOBS_LOG: {"event", "id", "job", "pipeline", "driver", "queue", "headers", "payload", "pid", "t"}.
// What it answers depends on the job name:
//   ok            ack (type 2)
//   complete      complete() (type 0)
//   nack-once     first delivery: nack with requeue; later: ack
//   nack-drop     nack without requeue
//   requeue-once  first delivery: requeue with header attempt=2 and delay_seconds from the payload; later: ack
//   crash-once    first delivery: exit(1) without answering; later: ack
//   error-once    first delivery: an ERROR frame; later: ack
//   garbage       a body that is not an answer
//   slow          sleeps the payload's seconds (default 2), then acks
$in = STDIN;
$out = STDOUT;
$log = getenv('JOBS_LOG');

function frame($out, int $flags, string $ctx, string $body): void
{
    $p = $ctx . $body;
    $h = chr(0x14) . chr($flags) . pack('V', strlen($p));
    fwrite($out, $h . pack('V', crc32($h)) . "\0\0" . pack('V', strlen($ctx)) . $p);
}

function note(string $log, array $e): void
{
    $e['pid'] = getmypid();
    $e['t'] = microtime(true);
    file_put_contents($log, json_encode($e) . "\n", FILE_APPEND | LOCK_EX);
}

function first(string $log, string $id): bool
{
    return @fopen($log . '.seen.' . md5($id), 'x') !== false;
}

function readn($in, int $n): ?string
{
    $b = '';
    while (strlen($b) < $n) {
        $c = fread($in, $n - strlen($b));
        if ($c === false || $c === '') {
            return null;
        }
        $b .= $c;
    }
    return $b;
}

while (true) {
    $h = readn($in, 12);
    if ($h === null) {
        exit(0);
    }
    $hl = ord($h[0]) & 0x0f;
    $flags = ord($h[1]);
    $len = unpack('V', $h, 2)[1];
    $opts = $hl > 3 ? readn($in, ($hl - 3) * 4) : '';
    $p = readn($in, $len);
    if ($p === null || $opts === null) {
        exit(0);
    }
    if ($flags & 1) {
        if (str_contains($p, 'stop')) {
            exit(0);
        }
        $r = '{"pid":' . getmypid() . '}';
        $hd = "\x13\x01" . pack('V', strlen($r));
        fwrite($out, $hd . pack('V', crc32($hd)) . "\0\0" . $r);
        continue;
    }
    $clen = $opts !== '' ? unpack('V', $opts)[1] : 0;
    $ctx = json_decode(substr($p, 0, $clen), true) ?: [];
    $body = substr($p, $clen);
    $id = $ctx['id'] ?? '?';
    $job = $ctx['job'] ?? '?';
    $e = ['id' => $id, 'job' => $job, 'pipeline' => $ctx['pipeline'] ?? null, 'driver' => $ctx['driver'] ?? null,
        'queue' => $ctx['queue'] ?? null, 'headers' => $ctx['headers'] ?? null, 'payload' => $body, 'flags' => $flags];
    $once = fn () => first($log, $id);
    switch (true) {
        case $job === 'crash-once' && $once():
            note($log, $e + ['event' => 'crash']);
            exit(1);
        case $job === 'nack-once' && $once():
            note($log, $e + ['event' => 'nack']);
            frame($out, 0, '', '{"type":3,"data":{"message":"try again","requeue":true,"delay_seconds":0}}');
            continue 2;
        case $job === 'nack-drop':
            note($log, $e + ['event' => 'drop']);
            frame($out, 0, '', '{"type":3,"data":{"message":"no","requeue":false,"delay_seconds":0}}');
            continue 2;
        case $job === 'requeue-once' && $once():
            note($log, $e + ['event' => 'requeue']);
            frame($out, 0, '', '{"type":4,"data":{"message":"later","delay_seconds":' . (int) $body . ',"headers":{"attempt":["2"]}}}');
            continue 2;
        case $job === 'error-once' && $once():
            note($log, $e + ['event' => 'error']);
            frame($out, 0x40, '', 'something broke in PHP');
            continue 2;
        case $job === 'garbage':
            note($log, $e + ['event' => 'garbage']);
            frame($out, 0, '', 'this is not an answer');
            continue 2;
        case $job === 'slow':
            note($log, $e + ['event' => 'start']);
            usleep((int) (((float) ($body !== '' ? $body : 2)) * 1e6));
            break;
    }
    note($log, $e + ['event' => 'ack']);
    frame($out, 0, '', $job === 'complete' ? '{"type":0,"data":[]}' : '{"type":2,"data":[]}');
}
