<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use Courser\Tests\TestSupport;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/WorkerProcess.php';
require_once __DIR__ . '/Psr7Support.php';

/**
 * exit(), die() and fatal errors in an HttpWorker handler: runs
 * fixtures/exit_worker.php as a real process over pipes and checks that
 * the request in flight gets a 500 (or a cut stream), that STDERR has the
 * one clear line, and that the worker stops reading requests.
 */
final class HttpWorkerExitTest extends TestCase
{
    private const WORKER = __DIR__ . '/fixtures/exit_worker.php';

    private const LINE = 'courser: exit() or die() was called while handling GET /exit; the response is 500 and this worker will be replaced';

    public function testExitMidRequestSendsA500AndTheClearLineThenTheProcessEnds(): void
    {
        $worker = new WorkerProcess(self::WORKER);

        [$status, , $body] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/', [], [], ''));
        self::assertSame(200, $status);
        self::assertStringStartsWith('pid ', $body);

        [$status, $headers, $body, $frames] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/exit?token=secret'));
        self::assertCount(1, $frames);
        self::assertSame(Frame::CODEC_PROTO, $frames[0]->flags);
        self::assertSame(500, $status);
        self::assertSame("Internal Server Error\n", $body, 'the handler\'s buffered output is not sent');
        self::assertSame(['Content-Type' => ['text/plain; charset=utf-8']], $headers);

        // The worker closed its input before answering: the server cannot hand it another request.
        self::assertFalse($worker->send(WorkerProcess::request('GET', 'http://localhost/')));

        [$code, $stdout, $stderr] = $worker->finish();
        self::assertSame(3, $code);
        self::assertSame('', $stdout, 'nothing after the response frame on the relay');
        self::assertStringContainsString("half a page\n", $stderr, 'buffered output goes to the log');
        self::assertStringContainsString(self::LINE . "\n", $stderr);
        self::assertStringNotContainsString('secret', $stderr, 'the query is left out of the line');
        self::assertLessThan(strpos($stderr, self::LINE), strpos($stderr, "app shutdown\n"), 'the application\'s shutdown functions run first');
        self::assertSame(1, substr_count($stderr, 'courser: '));
    }

    public function testOnAUnixSocketRelayTheWorkerShutsDownReadingBeforeAnswering(): void
    {
        $dir = Psr7Support::tempDir();
        $path = $dir . '/relay.sock';
        $server = stream_socket_server('unix://' . $path, $errorCode, $errorMessage);
        self::assertIsResource($server, $errorMessage);
        $worker = null;

        try {
            $worker = new WorkerProcess(self::WORKER, ['RR_RELAY' => 'unix://' . $path]);
            $connection = stream_socket_accept($server, 10);
            self::assertIsResource($connection, 'the worker connects');

            fwrite($connection, WorkerProcess::request('GET', 'http://localhost/'));
            [$status, , $body] = WorkerProcess::decode([Frame::fromBytes(TestSupport::readRawFrame($connection))]);
            self::assertSame(200, $status);
            self::assertStringStartsWith('pid ', $body);

            // /linger stays up after answering: the write below does not fail because the process is gone.
            fwrite($connection, WorkerProcess::request('GET', 'http://localhost/linger'));
            [$status, , $body] = WorkerProcess::decode([Frame::fromBytes(TestSupport::readRawFrame($connection))]);
            self::assertSame(500, $status);
            self::assertSame("Internal Server Error\n", $body);

            // shutdown(SHUT_RD) on the worker's side: the next request cannot be written (EPIPE).
            $warning = '';
            set_error_handler(static function (int $type, string $message) use (&$warning): bool {
                $warning = $message;

                return true;
            });
            try {
                $written = fwrite($connection, WorkerProcess::request('GET', 'http://localhost/'));
            } finally {
                restore_error_handler();
            }
            self::assertFalse($written);
            self::assertStringContainsString('Broken pipe', $warning);

            fclose($connection);
            [$code, , $stderr] = $worker->finish();
            self::assertSame(3, $code);
            self::assertStringContainsString('courser: exit() or die() was called while handling GET /linger; the response is 500 and this worker will be replaced', $stderr);
        } finally {
            $worker = null;
            fclose($server);
            exec('rm -rf ' . escapeshellarg($dir));
        }
    }

    public function testDieKeepsItsMessageInTheLog(): void
    {
        $worker = new WorkerProcess(self::WORKER);

        [$status, , $body] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/die'));

        self::assertSame(500, $status);
        self::assertSame("Internal Server Error\n", $body);
        [$code, , $stderr] = $worker->finish();
        self::assertSame(0, $code);
        self::assertStringContainsString('bye from die', $stderr);
        self::assertStringContainsString('courser: exit() or die() was called while handling GET /die; the response is 500 and this worker will be replaced', $stderr);
    }

    /**
     * @return iterable<string, array{0: string, 1: string}>
     */
    public static function fatalErrors(): iterable
    {
        yield 'an undefined function' => ['/fatal', 'courser: a fatal error: Uncaught Error: Call to undefined function courser_no_such_function() in ' . self::WORKER . ':'];
        yield 'an uncaught exception' => ['/throw', 'courser: a fatal error: Uncaught RuntimeException: thrown by the handler in ' . self::WORKER . ':'];
        yield 'memory exhausted' => ['/oom', 'courser: a fatal error: Allowed memory size of 16777216 bytes exhausted'];
    }

    /**
     * @dataProvider fatalErrors
     */
    public function testAFatalErrorSendsA500AndNamesTheError(string $path, string $line): void
    {
        $worker = new WorkerProcess(self::WORKER);

        [$status, , $body] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost' . $path));

        self::assertSame(500, $status);
        self::assertSame("Internal Server Error\n", $body, 'no PHP details reach the client');
        [$code, $stdout, $stderr] = $worker->finish();
        self::assertSame(255, $code);
        self::assertSame('', $stdout);
        self::assertStringContainsString($line, $stderr);
        self::assertMatchesRegularExpression('/, while handling GET ' . preg_quote($path, '/') . '; the response is 500 and this worker will be replaced\n/', $stderr);
    }

    public function testExitDuringAStreamEndsItWithAnErrorFrame(): void
    {
        $worker = new WorkerProcess(self::WORKER);

        self::assertTrue($worker->send(WorkerProcess::request('GET', 'http://localhost/stream')));
        $frames = $worker->readResponse();

        self::assertCount(3, $frames);
        self::assertSame(Frame::STREAM, $frames[0]->byte10);
        self::assertStringEndsWith('one;', $frames[0]->payload);
        self::assertStringEndsWith('two;', $frames[1]->payload);
        self::assertTrue($frames[2]->hasFlag(Frame::ERROR), 'the server cuts the response short');
        self::assertSame('exit() while streaming the response to GET /stream', $frames[2]->payload);
        [, , $stderr] = $worker->finish();
        self::assertStringContainsString('courser: exit() or die() was called while handling GET /stream; the streamed response was cut short and this worker will be replaced', $stderr);
    }

    public function testExitAfterTheResponseSendsNothingMore(): void
    {
        $worker = new WorkerProcess(self::WORKER);

        [$status, , $body] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/after'));

        self::assertSame(200, $status);
        self::assertSame('answered', $body);
        [$code, $stdout, $stderr] = $worker->finish();
        self::assertSame(0, $code);
        self::assertSame('', $stdout);
        self::assertStringNotContainsString('courser:', $stderr);
    }

    public function testThePsr7WorkerInheritsTheHandling(): void
    {
        if (!Psr7Support::loadNyholm()) {
            self::markTestSkipped('nyholm/psr7 is not installed: apt-get install php-nyholm-psr7');
        }
        $worker = new WorkerProcess(self::WORKER, ['COURSER_EXIT_PSR7' => '1']);

        [$status] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/'));
        self::assertSame(200, $status);
        [$status, , $body] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/exit'));

        self::assertSame(500, $status);
        self::assertSame("Internal Server Error\n", $body);
        [$code, , $stderr] = $worker->finish();
        self::assertSame(3, $code);
        self::assertStringContainsString(self::LINE, $stderr);
    }

    public function testAWorkerThatIsStoppedBetweenRequestsSaysNothing(): void
    {
        $worker = new WorkerProcess(self::WORKER);

        [$status] = $worker->exchange(WorkerProcess::request('GET', 'http://localhost/'));
        self::assertSame(200, $status);
        self::assertTrue($worker->send(TestSupport::vector('stop')));

        [$code, $stdout, $stderr] = $worker->finish();
        self::assertSame(0, $code);
        self::assertSame('', $stdout);
        self::assertStringNotContainsString('courser:', $stderr);
    }
}
