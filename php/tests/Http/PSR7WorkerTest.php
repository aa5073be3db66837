<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\Proto;
use Courser\Http\PSR7Worker;
use Courser\Relay\StreamRelay;
use Courser\Tests\TestSupport;
use Courser\Worker;
use Nyholm\Psr7\Factory\Psr17Factory;
use PHPUnit\Framework\TestCase;
use Psr\Http\Message\ResponseInterface;
use Psr\Http\Message\ServerRequestInterface;
use Psr\Http\Message\UploadedFileInterface;

require_once __DIR__ . '/Psr7Support.php';

/**
 * Drives a PSR7Worker on Debian's nyholm/psr7 over a socket pair.
 */
final class PSR7WorkerTest extends TestCase
{
    /** @var resource */
    private $server;

    /** @var resource */
    private $client;

    private Psr17Factory $factory;

    private PSR7Worker $psr7;

    /** @var array<array-key, mixed> */
    private array $savedServer;

    private ?string $dir = null;

    protected function setUp(): void
    {
        if (!Psr7Support::loadNyholm()) {
            self::markTestSkipped('nyholm/psr7 is not installed: apt-get install php-nyholm-psr7');
        }
        require_once __DIR__ . '/ForwardOnlyStream.php';
        HttpWorker::resetCodec();
        $this->savedServer = $_SERVER;
        [$this->server, $this->client] = TestSupport::socketPair();
        $this->factory = new Psr17Factory();
        $this->psr7 = $this->worker();
    }

    protected function tearDown(): void
    {
        $_SERVER = $this->savedServer;
        HttpWorker::resetCodec();
        fclose($this->server);
        fclose($this->client);
        if ($this->dir !== null) {
            Psr7Support::removeDir($this->dir);
        }
    }

    public function testTheGetRequestBecomesAPsr7Request(): void
    {
        $before = microtime(true);
        $request = $this->receive(TestSupport::vector('http_request_get'));

        self::assertSame('GET', $request->getMethod());
        self::assertSame('http://localhost:8080/hello?name=World&arr%5B%5D=1&arr%5B%5D=2', (string) $request->getUri());
        self::assertSame('1.1', $request->getProtocolVersion());
        self::assertSame(['v1', 'v2'], $request->getHeader('x-multi-in'));
        self::assertSame(['localhost:8080'], $request->getHeader('Host'));
        self::assertSame(['sid' => 'abc123', 'theme' => 'dark mode'], $request->getCookieParams());
        self::assertSame(['name' => 'World', 'arr' => ['1', '2']], $request->getQueryParams());
        self::assertNull($request->getParsedBody());
        self::assertSame('', (string) $request->getBody());
        self::assertSame(['rr_parsed_body' => false], $request->getAttributes());

        $server = $request->getServerParams();
        self::assertSame('/hello?name=World&arr%5B%5D=1&arr%5B%5D=2', $server['REQUEST_URI']);
        self::assertSame('127.0.0.1', $server['REMOTE_ADDR']);
        self::assertSame('GET', $server['REQUEST_METHOD']);
        self::assertSame('curl/8.0', $server['HTTP_USER_AGENT']);
        self::assertSame('v1, v2', $server['HTTP_X_MULTI_IN']);
        self::assertSame('*/*', $server['HTTP_ACCEPT']);
        self::assertSame('localhost:8080', $server['HTTP_HOST']);
        self::assertSame('8080', $server['SERVER_PORT']);
        self::assertSame('name=World&arr%5B%5D=1&arr%5B%5D=2', $server['QUERY_STRING']);
        self::assertArrayNotHasKey('CONTENT_TYPE', $server);
        self::assertGreaterThanOrEqual($before, $server['REQUEST_TIME_FLOAT']);
        self::assertSame((int) $server['REQUEST_TIME_FLOAT'], $server['REQUEST_TIME']);
        self::assertSame($server, $_SERVER);
    }

    public function testAFormRequestHasItsParsedBodyAndContentHeadersInServerParams(): void
    {
        $request = $this->receive(TestSupport::vector('http_request_form'));

        self::assertSame(['a' => '1', 'b' => ['x', 'y'], 'c' => ['d' => 'e']], $request->getParsedBody());
        self::assertTrue($request->getAttribute('rr_parsed_body'));
        self::assertSame('{"a":"1","b":["x","y"],"c":{"d":"e"}}', (string) $request->getBody());
        self::assertSame('application/x-www-form-urlencoded', $request->getServerParams()['CONTENT_TYPE']);
        self::assertSame('23', $request->getServerParams()['CONTENT_LENGTH']);
        self::assertArrayNotHasKey('HTTP_CONTENT_TYPE', $request->getServerParams());
    }

    public function testUploadsBecomeUploadedFilesWithTheirNesting(): void
    {
        $this->dir = Psr7Support::tempDir();
        $request = $this->receive(Psr7Support::multipartRequest($this->dir));

        $files = $request->getUploadedFiles();
        self::assertSame(['avatar', 'docs'], array_keys($files));
        self::assertInstanceOf(UploadedFileInterface::class, $files['avatar']);
        self::assertSame("hello upload\n", (string) $files['avatar']->getStream());
        self::assertSame('me.txt', $files['avatar']->getClientFilename());
        self::assertSame('text/plain', $files['avatar']->getClientMediaType());
        self::assertSame(13, $files['avatar']->getSize());
        self::assertCount(2, $files['docs']);
        self::assertSame('doc-two', (string) $files['docs'][0]->getStream());
        self::assertSame(UPLOAD_ERR_EXTENSION, $files['docs'][1]->getError());
        self::assertSame('evil.php', $files['docs'][1]->getClientFilename());
        self::assertSame(['title' => 'hi'], $request->getParsedBody());

        $files['avatar']->moveTo($this->dir . '/moved');
        self::assertSame("hello upload\n", file_get_contents($this->dir . '/moved'));
    }

    public function testAnUploadWhoseTemporaryFileIsGoneGetsAnError(): void
    {
        $uploads = '{"f":{"name":"a.txt","mime":"text/plain","size":3,"error":0,"tmpName":"/nonexistent/courser/upload1"},'
            . '"deep":{"a":{"b":[{"name":"n","mime":"m","size":0,"error":4,"tmpName":""}]}}}';
        $request = $this->receive(Psr7Support::protoRequest(['method' => 'POST', 'uri' => 'http://h/', 'uploads' => $uploads]));

        $files = $request->getUploadedFiles();
        self::assertSame(UPLOAD_ERR_NO_TMP_DIR, $files['f']->getError());
        self::assertSame(UPLOAD_ERR_NO_FILE, $files['deep']['a']['b'][0]->getError());
    }

    public function testHttp2AndTheIpAddressAttributeAreMapped(): void
    {
        $request = $this->receive(Psr7Support::protoRequest([
            'remoteAddr' => '::1',
            'protocol' => 'HTTP/2.0',
            'method' => 'PUT',
            'uri' => 'https://example.com/x',
            'attributes' => ['ipAddress' => ['203.0.113.9']],
        ], 'raw'));

        self::assertSame('2', $request->getProtocolVersion());
        self::assertSame('PUT', $request->getMethod());
        self::assertSame('raw', (string) $request->getBody());
        self::assertSame('203.0.113.9', $request->getAttribute('ipAddress'));
        self::assertSame('203.0.113.9', $request->getServerParams()['REMOTE_ADDR']);
        self::assertSame('on', $request->getServerParams()['HTTPS']);
        self::assertSame('443', $request->getServerParams()['SERVER_PORT']);
        self::assertSame('/x', $request->getServerParams()['REQUEST_URI']);
    }

    public function testAnUnknownProtocolBecomesHttp11(): void
    {
        $request = $this->receive(Psr7Support::protoRequest(['protocol' => 'HTTP/3', 'uri' => 'http://h/']));
        self::assertSame('1.1', $request->getProtocolVersion());

        $request = $this->receive(Psr7Support::protoRequest(['protocol' => 'HTTP/1.0', 'uri' => 'http://h/']));
        self::assertSame('1.0', $request->getProtocolVersion());
    }

    /**
     * @return iterable<string, array{0: string}>
     */
    public static function capturedExchanges(): iterable
    {
        foreach (['get', 'form', 'multipart', 'json_body', 'head'] as $name) {
            yield $name => [$name];
        }
    }

    /**
     * The capturing worker answered every request with a JSON summary of its
     * PSR-7 request: the same summary, built from our PSR-7 request, must give
     * the identical response frame, body included.
     *
     * @dataProvider capturedExchanges
     */
    public function testTheCapturedExchangeIsReproducedByteForByte(string $name): void
    {
        if ($name === 'multipart') {
            $this->dir = Psr7Support::tempDir();
            $frame = Psr7Support::multipartRequest($this->dir);
        } else {
            $frame = TestSupport::vector('http_request_' . $name);
        }
        $request = $this->receive($frame);

        self::assertTrue($this->psr7->respond($this->vectorResponse(Psr7Support::summary($request))));

        self::assertSame(
            TestSupport::vector('http_response_' . $name),
            TestSupport::readRawFrame($this->server),
        );
    }

    public function testTheCapturedJsonExchangeIsReproducedByteForByte(): void
    {
        $request = $this->receive(TestSupport::vector('http_request_json_get'));

        $this->psr7->respond($this->vectorResponse(Psr7Support::summary($request)));

        self::assertSame(TestSupport::vector('http_response_json_get'), TestSupport::readRawFrame($this->server));
    }

    public function testEarlyHintsThenTheFinalResponseReproduceTheCapturedFrames(): void
    {
        $this->receive(TestSupport::vector('http_request_early_hints'));

        $this->psr7->respond($this->factory->createResponse(103)->withHeader('Link', '</style.css>; rel=preload; as=style'));
        $this->psr7->respond($this->factory->createResponse(200)
            ->withHeader('Content-Type', 'text/plain')
            ->withBody($this->factory->createStream('after hints')));

        self::assertSame(
            [TestSupport::vector('http_response_early_hints_01'), TestSupport::vector('http_response_early_hints_02')],
            TestSupport::drainRawFrames($this->server),
        );
    }

    public function testRespondGeneratorReproducesTheCapturedStream(): void
    {
        $this->receive(TestSupport::vector('http_request_stream'));
        $chunks = (static function (): \Generator {
            for ($i = 1; $i <= 7; ++$i) {
                yield "chunk-$i;";
            }

            return 'end';
        })();

        self::assertTrue($this->psr7->respondGenerator(200, ['Content-Type' => ['text/plain']], $chunks));

        $frames = TestSupport::drainRawFrames($this->server);
        self::assertCount(8, $frames);
        foreach ($frames as $i => $bytes) {
            self::assertSame(TestSupport::vector(sprintf('http_response_stream_%02d', $i + 1)), $bytes, "frame $i");
        }
    }

    public function testABodyOverTheLimitIsStreamedInChunksWithTheLastInTheFinalFrame(): void
    {
        $this->psr7 = $this->worker(10, 4);
        $this->receive(TestSupport::vector('http_request_stream'));

        $this->psr7->respond($this->factory->createResponse(200)->withBody($this->factory->createStream('abcdefghijklmn')));

        self::assertSame(
            [[Frame::STREAM, 'abcd'], [Frame::STREAM, 'efgh'], [Frame::STREAM, 'ijkl'], [0, 'mn']],
            $this->bodies(),
        );
    }

    public function testABodyAtTheLimitGoesInOneFrameEvenAfterBeingRead(): void
    {
        $this->psr7 = $this->worker(10, 4);
        $this->receive(TestSupport::vector('http_request_stream'));
        $stream = $this->factory->createStream('0123456789');
        $stream->getContents();

        $this->psr7->respond($this->factory->createResponse(200)->withBody($stream));

        self::assertSame([[0, '0123456789']], $this->bodies());
    }

    public function testAnUnknownSizeBodyThatEndsWithinTheLimitGoesInOneFrame(): void
    {
        $this->psr7 = $this->worker(10, 4);
        $this->receive(TestSupport::vector('http_request_stream'));

        $this->psr7->respond($this->factory->createResponse(200)->withBody(new ForwardOnlyStream(['012', '3456', '789'])));

        self::assertSame([[0, '0123456789']], $this->bodies());
    }

    public function testAnUnknownSizeBodyOverTheLimitIsStreamed(): void
    {
        $this->psr7 = $this->worker(10, 4);
        $this->receive(TestSupport::vector('http_request_stream'));

        $this->psr7->respond($this->factory->createResponse(200)->withBody(new ForwardOnlyStream(['012', '3456', '789', 'ab', 'c'])));

        self::assertSame(
            [[Frame::STREAM, '0123'], [Frame::STREAM, '4567'], [Frame::STREAM, '89ab'], [0, 'c']],
            $this->bodies(),
        );
    }

    public function testAnEmptyBodyIsOneFrame(): void
    {
        $this->receive(TestSupport::vector('http_request_head'));

        $this->psr7->respond($this->factory->createResponse(204));

        $frame = Frame::fromBytes(TestSupport::readRawFrame($this->server));
        self::assertSame(0, $frame->byte10);
        self::assertSame(['status' => 204, 'headers' => []], Proto::decodeResponse($frame->payload));
    }

    public function testTheStopCommandEndsTheLoop(): void
    {
        fwrite($this->server, TestSupport::vector('stop'));

        self::assertNull($this->psr7->waitRequest());
    }

    private function worker(int $limit = PSR7Worker::DEFAULT_SINGLE_FRAME_LIMIT, int $chunk = PSR7Worker::DEFAULT_CHUNK_SIZE): PSR7Worker
    {
        return new PSR7Worker(
            new Worker(new StreamRelay($this->client, $this->client)),
            $this->factory,
            $this->factory,
            $this->factory,
            $limit,
            $chunk,
        );
    }

    private function receive(string $frame): ServerRequestInterface
    {
        fwrite($this->server, $frame);
        $request = $this->psr7->waitRequest();
        self::assertNotNull($request);

        return $request;
    }

    private function vectorResponse(string $body): ResponseInterface
    {
        return $this->factory->createResponse(Psr7Support::VECTOR_STATUS)
            ->withHeader('Content-Type', 'application/json')
            ->withHeader('Set-Cookie', 'a=1; Path=/')
            ->withAddedHeader('Set-Cookie', 'b=2; HttpOnly')
            ->withHeader('X-Multi', ['one', 'two'])
            ->withBody($this->factory->createStream($body));
    }

    /**
     * @return list<array{0: int, 1: string}> byte10 and body of every frame sent
     */
    private function bodies(): array
    {
        return array_map(
            static fn (string $bytes): array => [Frame::fromBytes($bytes)->byte10, substr(Frame::fromBytes($bytes)->payload, Frame::fromBytes($bytes)->options[0])],
            TestSupport::drainRawFrames($this->server),
        );
    }
}
