<?php

declare(strict_types=1);

namespace Courser\Tests\Bridge\Symfony;

use Courser\Bridge\Symfony\SymfonyWorker;
use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\Proto;
use Courser\Relay\StreamRelay;
use Courser\Tests\Bridge\Symfony\Fixtures\ContainerKernel;
use Courser\Tests\Bridge\Symfony\Fixtures\Counter;
use Courser\Tests\Bridge\Symfony\Fixtures\TestApp;
use Courser\Tests\Http\Psr7Support;
use Courser\Tests\TestSupport;
use Courser\Worker;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/fixtures/TestApp.php';
require_once __DIR__ . '/../../Http/Psr7Support.php';

/**
 * Drives a SymfonyWorker over a socket pair; the test plays the server.
 */
final class SymfonyWorkerTest extends TestCase
{
    /** @var resource */
    private $server;

    /** @var resource */
    private $client;

    /** @var resource */
    private $log;

    private Counter $counter;

    private SymfonyWorker $worker;

    protected function setUp(): void
    {
        if (!TestApp::loadSymfony()) {
            self::markTestSkipped('Symfony 5.4 components are not installed (apt-get install php-symfony-http-kernel php-symfony-routing)');
        }
        HttpWorker::resetCodec();
        [$this->server, $this->client] = TestSupport::socketPair();
        $this->log = fopen('php://memory', 'w+');
        $this->counter = new Counter();
        $this->worker = $this->makeWorker(true);
    }

    protected function tearDown(): void
    {
        HttpWorker::resetCodec();
        fclose($this->server);
        fclose($this->client);
        fclose($this->log);
    }

    private function makeWorker(bool $catch): SymfonyWorker
    {
        $http = new HttpWorker(new Worker(new StreamRelay($this->client, $this->client)));
        $counter = $this->counter;

        return new SymfonyWorker(static fn () => TestApp::kernel($counter), $http, [$counter], $catch, 1024, $this->log);
    }

    /**
     * Sends one request and returns [status, headers, body, frames, error].
     *
     * @param array<string, mixed> $fields
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string, 3: int, 4: ?string}
     */
    private function exchange(array $fields, string $body = '', ?SymfonyWorker $worker = null): array
    {
        fwrite($this->server, Psr7Support::protoRequest($fields, $body));
        self::assertTrue(($worker ?? $this->worker)->serveNext());

        $status = 0;
        $headers = [];
        $content = '';
        $count = 0;
        do {
            $frame = Frame::fromBytes(TestSupport::readRawFrame($this->server));
            ++$count;
            if (($frame->flags & Frame::ERROR) !== 0) {
                return [0, [], '', $count, $frame->payload];
            }
            $length = $frame->options[0];
            $response = Proto::decodeResponse(substr($frame->payload, 0, $length));
            $status = $response['status'];
            $headers = $response['headers'];
            $content .= substr($frame->payload, $length);
        } while (($frame->byte10 & Frame::STREAM) !== 0);

        return [$status, $headers, $content, $count, null];
    }

    public function testTheExampleRoutesAnswer(): void
    {
        [$status, $headers, $body] = $this->exchange(['uri' => 'http://localhost/']);
        self::assertSame(200, $status);
        self::assertSame("Hello from Symfony\n", $body);
        self::assertSame(['text/plain; charset=utf-8'], $headers['Content-Type']);

        [$status, , $body] = $this->exchange(['uri' => 'http://localhost/items']);
        self::assertSame(200, $status);
        $items = json_decode($body, true);
        self::assertCount(20, $items);
        self::assertSame(['id' => 20, 'name' => 'Item 20'], $items[19]);

        [$status] = $this->exchange(['uri' => 'http://localhost/missing']);
        self::assertSame(404, $status);
    }

    public function testRouteParametersReachTheController(): void
    {
        [$status, , $body] = $this->exchange(['uri' => 'http://localhost/hello/Ada%20L']);
        self::assertSame(200, $status);
        self::assertSame("Hello, Ada L!\n", $body);
    }

    public function testTheRequestIsConverted(): void
    {
        [$status, , $body] = $this->exchange([
            'method' => 'POST',
            'uri' => 'https://example.test:8443/state?a=1&arr%5B%5D=x',
            'rawQuery' => 'a=1&arr%5B%5D=x',
            'headers' => ['X-Test' => ['yes'], 'Content-Type' => ['application/x-www-form-urlencoded']],
            'cookies' => ['sid' => ['abc']],
            'parsed' => true,
            'remoteAddr' => '10.1.2.3',
        ], '{"f":"v","g":["1","2"]}');
        self::assertSame(200, $status);
        $seen = json_decode($body, true);
        self::assertSame('POST', $seen['method']);
        self::assertSame('/state', $seen['path']);
        self::assertSame(['a' => '1', 'arr' => ['x']], $seen['query']);
        self::assertSame(['f' => 'v', 'g' => ['1', '2']], $seen['request']);
        self::assertSame(['sid' => 'abc'], $seen['cookies']);
        self::assertSame('yes', $seen['header']);
        self::assertSame('', $seen['content']);
        self::assertSame('example.test', $seen['host']);
        self::assertSame('10.1.2.3', $seen['clientIp']);
    }

    public function testARawBodyBecomesTheContentAndUploadsBecomeUploadedFiles(): void
    {
        $dir = Psr7Support::tempDir();
        try {
            file_put_contents($dir . '/up', 'file body');
            $uploads = json_encode(['doc' => ['name' => 'a.txt', 'mime' => 'text/plain', 'size' => 9, 'error' => 0, 'tmpName' => $dir . '/up']]);
            [, , $body] = $this->exchange(['method' => 'PUT', 'uri' => 'http://h/state', 'uploads' => $uploads], 'raw bytes');
            $seen = json_decode($body, true);
            self::assertSame('raw bytes', $seen['content']);
            self::assertSame(['doc' => ['a.txt', 9, 'file body']], $seen['files']);
        } finally {
            Psr7Support::removeDir($dir);
        }
    }

    public function testTwoRequestsInARowDoNotLeakRequestStateAndTheServiceIsReset(): void
    {
        [, , $first] = $this->exchange(['uri' => 'http://h/state?name=one', 'rawQuery' => 'name=one', 'headers' => ['X-Test' => ['1']], 'cookies' => ['c' => ['1']]]);
        [, , $second] = $this->exchange(['uri' => 'http://h/state']);
        $first = json_decode($first, true);
        $second = json_decode($second, true);

        self::assertSame(['name' => 'one'], $first['query']);
        self::assertSame([], $second['query']);
        self::assertSame([], $second['cookies']);
        self::assertNull($second['header']);
        // Counter::reset() ran after each request: calls start again at 1 and the name is gone.
        self::assertSame(1, $first['calls']);
        self::assertSame(1, $second['calls']);
        self::assertNull($second['previousName']);
        self::assertSame(1, $second['resets'] - $first['resets']);
        self::assertSame(0, $this->counter->calls);
    }

    public function testAControllerExceptionGivesA500AndTheNextRequestWorks(): void
    {
        [$status, , $body] = $this->exchange(['uri' => 'http://h/boom']);
        self::assertSame(500, $status);
        self::assertSame('{"error":"Internal Server Error"}', $body);

        [$status, , $body] = $this->exchange(['uri' => 'http://h/']);
        self::assertSame(200, $status);
        self::assertSame("Hello from Symfony\n", $body);
    }

    public function testAnExceptionThatEscapesTheKernelIsAnErrorFrameAndTheWorkerGoesOn(): void
    {
        $worker = $this->makeWorker(false);
        [, , , , $error] = $this->exchange(['uri' => 'http://h/boom'], '', $worker);
        self::assertSame('boom in the controller', $error);
        rewind($this->log);
        self::assertStringContainsString('RuntimeException: boom in the controller', (string) stream_get_contents($this->log));

        [$status, , $body] = $this->exchange(['uri' => 'http://h/hello/again'], '', $worker);
        self::assertSame(200, $status);
        self::assertSame("Hello, again!\n", $body);
    }

    public function testEveryCookieIsItsOwnSetCookieHeader(): void
    {
        [$status, $headers] = $this->exchange(['uri' => 'http://h/cookies']);
        self::assertSame(200, $status);
        self::assertSame(['a=1; path=/; httponly; samesite=lax', 'b=2; path=/x; httponly; samesite=lax'], $headers['Set-Cookie']);
    }

    public function testAnUndecodableRequestIsAnsweredWithAnErrorAndTheWorkerStays(): void
    {
        $context = "\xff\xff\xff\xff";
        fwrite($this->server, Frame::encode(Frame::CODEC_PROTO, [strlen($context)], $context));
        self::assertTrue($this->worker->serveNext());
        $frame = Frame::fromBytes(TestSupport::readRawFrame($this->server));
        self::assertSame(Frame::ERROR, $frame->flags & Frame::ERROR);
        self::assertStringStartsWith('Courser Symfony bridge: ', $frame->payload);

        [$status, , $body] = $this->exchange(['uri' => 'http://localhost/']);
        self::assertSame([200, "Hello from Symfony\n"], [$status, $body]);
    }

    public function testAStreamedResponseIsSentInChunks(): void
    {
        [$status, $headers, $body, $frames] = $this->exchange(['uri' => 'http://h/stream']);
        self::assertSame(200, $status);
        self::assertSame(['text/plain; charset=UTF-8'], $headers['Content-Type']);
        self::assertSame(str_repeat('1', 600) . str_repeat('2', 600) . str_repeat('3', 600) . str_repeat('4', 600) . str_repeat('5', 600), $body);
        self::assertGreaterThan(1, $frames);
    }

    public function testAStreamedResponseReachesTheServerWhileItsCallbackRuns(): void
    {
        $GLOBALS['courser_stream_probe'] = $this->server;
        $GLOBALS['courser_stream_probe_seen'] = null;
        [$status, , $body, $frames] = $this->exchange(['uri' => 'http://h/stream-probe']);
        unset($GLOBALS['courser_stream_probe']);
        self::assertSame(200, $status);
        self::assertSame('firstsecond', $body);
        self::assertTrue($GLOBALS['courser_stream_probe_seen'], 'the first chunk was held until the callback ended');
        self::assertSame(3, $frames, 'a frame per flush, then the end of the stream');
    }

    public function testABinaryFileResponseIsStreamedFromTheFileAndHonoursRanges(): void
    {
        $dir = Psr7Support::tempDir();
        try {
            $data = '';
            for ($i = 0; strlen($data) < 5000; ++$i) {
                $data .= sprintf('%05d|', $i);
            }
            file_put_contents($dir . '/f.bin', $data);
            $uri = 'http://h/file?path=' . rawurlencode($dir . '/f.bin');
            [$status, $headers, $body, $frames, $error] = $this->exchange(['uri' => $uri, 'rawQuery' => 'path=' . rawurlencode($dir . '/f.bin')]);
            self::assertNull($error);
            self::assertSame(200, $status);
            self::assertSame($data, $body);
            self::assertSame([(string) strlen($data)], $headers['Content-Length']);
            self::assertSame(6, $frames, '5004 bytes in five 1024-byte chunks (the last one shorter), then an empty final frame');

            [$status, $headers, $body] = $this->exchange(['uri' => $uri, 'rawQuery' => 'path=' . rawurlencode($dir . '/f.bin'), 'headers' => ['Range' => ['bytes=6-17']]]);
            self::assertSame(206, $status);
            self::assertSame(substr($data, 6, 12), $body);
        } finally {
            Psr7Support::removeDir($dir);
        }
    }

    public function testTheKernelIsBuiltOncePerWorker(): void
    {
        $builds = 0;
        $counter = $this->counter;
        $http = new HttpWorker(new Worker(new StreamRelay($this->client, $this->client)));
        $worker = new SymfonyWorker(static function () use (&$builds, $counter) {
            ++$builds;

            return TestApp::kernel($counter);
        }, $http, [], true, 1024, $this->log);
        $kernel = $worker->getKernel();
        $this->exchange(['uri' => 'http://h/'], '', $worker);
        $this->exchange(['uri' => 'http://h/'], '', $worker);
        self::assertSame(1, $builds);
        self::assertSame($kernel, $worker->getKernel());
    }

    public function testAKernelIsBootedOnceTerminatedAfterEachRequestAndItsServicesResetterRuns(): void
    {
        if (!class_exists(ContainerKernel::class, false)) {
            self::markTestSkipped('symfony/dependency-injection is not installed');
        }
        $counter = new Counter();
        $kernel = new ContainerKernel(TestApp::kernel($counter), $counter);
        $http = new HttpWorker(new Worker(new StreamRelay($this->client, $this->client)));
        // No extra resettables: only the container's services_resetter resets the Counter.
        $worker = new SymfonyWorker($kernel, $http, [], true, 1024, $this->log);

        [, , $first] = $this->exchange(['uri' => 'http://h/state?name=one', 'rawQuery' => 'name=one'], '', $worker);
        [, , $second] = $this->exchange(['uri' => 'http://h/state'], '', $worker);

        self::assertSame(1, $kernel->boots);
        self::assertSame(2, $kernel->terminates);
        self::assertSame(1, json_decode($first, true)['calls']);
        self::assertSame(1, json_decode($second, true)['calls']);
        self::assertNull(json_decode($second, true)['previousName']);
        self::assertSame(2, $counter->resets);
    }
}
