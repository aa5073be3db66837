<?php
// Fault-injection worker for tests/faults.rs, on the Courser SDK. The path picks
// a behaviour; environment variables make the whole worker misbehave:
//   FAULT_BOOT_FAIL_FILE=path  exit 3 during boot (before the PID handshake)
//                              while that file exists
//   FAULT_DIE_AFTER=N          exit 0 after answering N requests
//   FAULT_BOOT_GARBAGE=1       write to stdout (the relay) before the handshake
declare(strict_types=1);
require __DIR__ . '/../../../../php/autoload.php';

use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

$bootFail = getenv('FAULT_BOOT_FAIL_FILE');
if ($bootFail !== false && $bootFail !== '' && file_exists($bootFail)) {
    fwrite(STDERR, "fault_worker: cannot boot: the database is unreachable\n");
    exit(3);
}
if (getenv('FAULT_BOOT_GARBAGE') === '1') {
    // Output before the SDK redirects it lands on the relay, before the handshake.
    fwrite(STDOUT, "Warning: stray output at boot\n");
}
$dieAfter = (int)(getenv('FAULT_DIE_AFTER') ?: 0);

$worker = Worker::create();
$leak = [];
$n = 0;
while ($req = $worker->waitPayload()) {
    $n++;
    $ctx = json_decode($req->context, true) ?: [];
    $path = parse_url($ctx['uri'] ?? '/', PHP_URL_PATH) ?: '/';
    parse_str($ctx['rawQuery'] ?? '', $q);
    $body = 'ok';
    switch ($path) {
        case '/pid':
            $body = (string)getmypid();
            break;
        case '/sleep':
            if (isset($q['pidfile'])) {
                // Tells the test which worker runs this request.
                file_put_contents($q['pidfile'], (string)getmypid());
            }
            usleep((int)($q['ms'] ?? 100) * 1000);
            $body = (string)getmypid();
            break;
        case '/leak':
            // Keeps every allocation, as a leaking application would.
            $leak[] = str_repeat(chr(65 + $n % 26), (int)($q['kb'] ?? 64) * 1024);
            usleep((int)($q['ms'] ?? 0) * 1000);
            $body = (string)getmypid();
            break;
        case '/hang':
            // A handler that never returns (until exec_ttl kills the worker).
            if (isset($q['pidfile'])) {
                file_put_contents($q['pidfile'], (string)getmypid());
            }
            while (true) {
                sleep(1);
            }
        case '/garbage':
            // Bypasses the SDK's output redirection: raw bytes on the relay.
            $out = fopen('php://stdout', 'w');
            fwrite($out, "Hello from a stray echo\n");
            fflush($out);
            break;
    }
    $worker->respond(new Payload($body, json_encode(['status' => 200, 'headers' => ['Content-Type' => ['text/plain']]])), Frame::CODEC_JSON);
    if ($dieAfter > 0 && $n >= $dieAfter) {
        exit(0);
    }
}
