<?php

/**
 * Test worker for Courser's integration tests.
 *
 * The job BODY chooses what the worker does; the context is not interpreted
 * and is sent back as the response context. Commands are "cmd" or "cmd:arg":
 *
 *   echo:TEXT    respond TEXT, with the flags of the request
 *   pid          respond getmypid()
 *   env:NAME     respond getenv(NAME), or "" when it is not set
 *   sleep:MS     sleep MS milliseconds, then respond "slept"
 *   crash:CODE   exit with status CODE without responding
 *   kill         SIGKILL itself (exit 137 when posix is missing)
 *   garbage      write "Hello from PHP" to the real stdout, then wait for the next job
 *   echo-stdout  echo "via echo" (the SDK sends it to STDERR), then respond "ok"
 *   leak:KB      keep KB more kilobytes forever, respond memory_get_usage()
 *   stop         ask the server to stop this worker, then exit 0
 *   error:MSG    send an error frame with MSG
 *   stream:N     stream "chunk1".."chunkN", then a final frame "end"
 *   stderr:TEXT  write TEXT and a newline to STDERR, then respond "ok"
 *   big:KB       respond KB kilobytes of "x"
 *   anything else: respond the body unchanged
 *
 * Responses use the JSON codec flag (0x08), except echo:TEXT.
 */

declare(strict_types=1);

require __DIR__ . '/../../php/autoload.php';

use Courser\Exception\StreamStoppedException;
use Courser\Frame;
use Courser\Payload;
use Courser\Worker;

/** Memory that leak:KB allocates and never frees. */
$leaked = [];

/** The process's real stdout, opened by the first garbage command. */
$realStdout = null;

$worker = Worker::create();

while ($job = $worker->waitPayload()) {
    [$command, $argument] = array_pad(explode(':', $job->body, 2), 2, '');
    $reply = static function (string $body, int $codec = Frame::CODEC_JSON) use ($worker, $job): void {
        $worker->respond(new Payload($body, $job->context), $codec);
    };

    switch ($command) {
        case 'echo':
            $reply($argument, $job->flags);
            break;
        case 'pid':
            $reply((string) getmypid());
            break;
        case 'env':
            $value = getenv($argument);
            $reply($value === false ? '' : $value);
            break;
        case 'sleep':
            usleep((int) $argument * 1000);
            $reply('slept');
            break;
        case 'crash':
            exit((int) $argument);
        case 'kill':
            if (function_exists('posix_kill')) {
                posix_kill(getmypid(), 9); // SIGKILL
            }
            exit(137);
        case 'garbage':
            // The real stdout, bypassing the SDK's output buffer: this corrupts a pipes relay.
            $realStdout ??= fopen('php://stdout', 'w');
            fwrite($realStdout, 'Hello from PHP');
            break;
        case 'echo-stdout':
            echo "via echo\n";
            $reply('ok');
            break;
        case 'leak':
            $leaked[] = str_repeat('x', (int) $argument * 1024);
            $reply((string) memory_get_usage());
            break;
        case 'stop':
            $worker->stop();
            exit(0);
        case 'error':
            $worker->error($argument);
            break;
        case 'stream':
            $chunks = (static function (int $count): Generator {
                try {
                    for ($i = 1; $i <= $count; ++$i) {
                        yield "chunk$i";
                    }
                } catch (StreamStoppedException) {
                    fwrite(STDERR, "stream stopped by the server\n");
                }

                return 'end';
            })((int) $argument);
            $worker->respondStream($chunks, $job->context, Frame::CODEC_JSON);
            break;
        case 'stderr':
            fwrite(STDERR, $argument . "\n");
            $reply('ok');
            break;
        case 'big':
            $reply(str_repeat('x', (int) $argument * 1024));
            break;
        default:
            $reply($job->body);
    }
}
