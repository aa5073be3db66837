<?php

declare(strict_types=1);

namespace Courser\Tests\Bridge\Symfony;

use Courser\Frame;
use Courser\Http\Proto;
use Courser\Tests\Bridge\Symfony\Fixtures\TestApp;
use Courser\Tests\Http\Psr7Support;
use Courser\Tests\TestSupport;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/fixtures/TestApp.php';
require_once __DIR__ . '/../../Http/Psr7Support.php';

/**
 * Runs examples/symfony/worker.php as a child process over pipes, as the server does.
 */
final class ExampleWorkerProcessTest extends TestCase
{
    public function testTheExampleWorkerAnswersSeveralRequestsAndStopsOnStop(): void
    {
        if (!TestApp::loadSymfony()) {
            self::markTestSkipped('Symfony 5.4 components are not installed');
        }
        $environment = getenv();
        unset($environment['RR_RELAY']);
        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/../../../../examples/symfony/worker.php'],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            $environment,
        );
        self::assertIsResource($process);
        try {
            $answers = [];
            foreach (['/', '/hello/Ada', '/items', '/nope', '/'] as $path) {
                fwrite($pipes[0], Psr7Support::protoRequest(['uri' => 'http://localhost' . $path]));
                self::assertTrue(TestSupport::readable($pipes[1], 10.0), "an answer to $path");
                $frame = Frame::fromBytes(TestSupport::readRawFrame($pipes[1]));
                $response = Proto::decodeResponse(substr($frame->payload, 0, $frame->options[0]));
                $answers[] = [$response['status'], substr($frame->payload, $frame->options[0])];
            }
            self::assertSame([200, "Hello from Symfony\n"], $answers[0]);
            self::assertSame([200, "Hello, Ada!\n"], $answers[1]);
            self::assertSame(200, $answers[2][0]);
            self::assertCount(20, json_decode($answers[2][1], true));
            self::assertSame(404, $answers[3][0]);
            self::assertSame([200, "Hello from Symfony\n"], $answers[4]);

            // The server's stop command: a control frame {"stop":true}; the worker exits with 0.
            fwrite($pipes[0], Frame::encode(Frame::CONTROL, [], '{"stop":true}'));
            fclose($pipes[0]);
            $deadline = microtime(true) + 10;
            do {
                $status = proc_get_status($process);
                usleep(10000);
            } while ($status['running'] && microtime(true) < $deadline);
            self::assertFalse($status['running']);
            self::assertSame(0, $status['exitcode']);
        } finally {
            foreach ($pipes as $pipe) {
                if (is_resource($pipe)) {
                    fclose($pipe);
                }
            }
            proc_close($process);
        }
    }
}
