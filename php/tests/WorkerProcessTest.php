<?php

declare(strict_types=1);

namespace Courser\Tests;

use Courser\Frame;
use Courser\Relay\StreamRelay;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/TestSupport.php';

/**
 * Runs fixtures/echo_worker.php as a real child process, the way the server
 * does, and checks that only frames reach its stdout.
 */
final class WorkerProcessTest extends TestCase
{
    public function testOverPipesStdoutCarriesOnlyFramesAndEchoesGoToStderr(): void
    {
        $environment = getenv();
        unset($environment['RR_RELAY']);
        $process = proc_open(
            [PHP_BINARY, '-d', 'display_errors=stdout', __DIR__ . '/fixtures/echo_worker.php'],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            $environment,
        );
        self::assertIsResource($process);

        $job = Frame::encode(Frame::CODEC_JSON, [7], '{"a":1}hi there');
        fwrite($pipes[0], TestSupport::vector('pid_request') . $job . TestSupport::vector('stop'));
        $stdout = stream_get_contents($pipes[1]);
        $stderr = stream_get_contents($pipes[2]);
        fclose($pipes[0]);
        fclose($pipes[1]);
        fclose($pipes[2]);

        self::assertSame(0, proc_close($process), $stderr);
        $pid = Frame::encode(Frame::CONTROL, [], '{"pid":' . $this->pidFrom($stdout) . '}');
        self::assertSame($pid . $job, $stdout);
        self::assertStringContainsString("boot noise\n", $stderr);
        self::assertStringContainsString("echoed: hi there\nprinted", $stderr);
        self::assertStringContainsString('a user warning', $stderr);
    }

    public function testOverAUnixSocketTheWorkerConnectsAndServes(): void
    {
        $path = sys_get_temp_dir() . '/courser-worker-' . getmypid() . '.sock';
        @unlink($path);
        $server = stream_socket_server('unix://' . $path);
        self::assertIsResource($server);

        $process = proc_open(
            [PHP_BINARY, __DIR__ . '/fixtures/echo_worker.php'],
            [0 => ['pipe', 'r'], 1 => ['pipe', 'w'], 2 => ['pipe', 'w']],
            $pipes,
            null,
            ['RR_RELAY' => 'unix://' . $path] + getenv(),
        );
        self::assertIsResource($process);
        $connection = stream_socket_accept($server, 5.0);
        self::assertIsResource($connection, 'the worker did not connect');
        $relay = new StreamRelay($connection, $connection);

        $relay->send(Frame::fromBytes(TestSupport::vector('pid_request')));
        $answer = $relay->waitFrame();
        $relay->send(new Frame(Frame::CODEC_PROTO, [3], 'ctxbody'));
        $response = $relay->waitFrame();
        $relay->send(Frame::fromBytes(TestSupport::vector('stop')));
        $stderr = stream_get_contents($pipes[2]);
        $stdout = stream_get_contents($pipes[1]);
        fclose($pipes[0]);
        fclose($pipes[1]);
        fclose($pipes[2]);
        $status = proc_close($process);
        fclose($connection);
        fclose($server);
        @unlink($path);

        self::assertSame(0, $status, $stderr);
        self::assertSame(Frame::CONTROL, $answer->flags);
        self::assertMatchesRegularExpression('/^\{"pid":[1-9]\d*\}$/', $answer->payload);
        self::assertSame(Frame::encode(Frame::CODEC_PROTO, [3], 'ctxbody'), $response->toBytes());
        self::assertSame('', $stdout);
        self::assertStringContainsString('echoed: body', $stderr);
    }

    /**
     * Extracts the PID from the first frame on the worker's stdout.
     */
    private function pidFrom(string $stdout): int
    {
        self::assertSame(1, preg_match('/^.{12}\{"pid":(\d+)\}/s', $stdout, $match), bin2hex($stdout));

        return (int) $match[1];
    }
}
