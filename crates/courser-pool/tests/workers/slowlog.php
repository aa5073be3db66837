<?php

/**
 * Test worker for crates/courser-pool/tests/slowlog.rs, built on the SDK
 * (Courser\Worker::create(), which installs the SIGPROF stack-trace handler
 * when the server sets COURSER_SLOWLOG=1).
 *
 *   nap:MS   sleep MS milliseconds inside two functions, going back to sleep
 *            when a signal ends usleep() early, then respond "napped"
 *   pid      respond getmypid()
 */

declare(strict_types=1);

require __DIR__ . '/../../../../php/autoload.php';

use Courser\Payload;
use Courser\Worker;

/** Sleeps until $until (microtime), whatever signals arrive meanwhile. */
function napUntil(float $until): void
{
    while (($left = $until - microtime(true)) > 0) {
        usleep((int) ceil($left * 1e6));
    }
}

function handle(string $command, string $argument): string
{
    switch ($command) {
        case 'nap':
            napUntil(microtime(true) + (int) $argument / 1000);

            return 'napped';
        case 'pid':
            return (string) getmypid();
        default:
            return $command;
    }
}

$worker = Worker::create();

while ($job = $worker->waitPayload()) {
    [$command, $argument] = array_pad(explode(':', $job->body, 2), 2, '');
    $worker->respond(new Payload(handle($command, $argument), $job->context));
}
