<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Exception\ProtocolException;
use Courser\Exception\StreamStoppedException;
use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\Proto;
use Courser\Http\Request;
use Courser\Relay\StreamRelay;
use Courser\Tests\TestSupport;
use Courser\Worker;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Psr7Support.php';

/**
 * Drives an HttpWorker over a socket pair; the test plays the server.
 */
final class HttpWorkerTest extends TestCase
{
    /** @var resource */
    private $server;

    /** @var resource */
    private $client;

    private HttpWorker $http;

    protected function setUp(): void
    {
        HttpWorker::resetCodec();
        [$this->server, $this->client] = TestSupport::socketPair();
        $this->http = new HttpWorker(new Worker(new StreamRelay($this->client, $this->client)));
    }

    protected function tearDown(): void
    {
        HttpWorker::resetCodec();
        fclose($this->server);
        fclose($this->client);
    }

    public function testTheProtobufGetRequestGivesTheDocumentedValues(): void
    {
        $request = $this->receive('http_request_get');

        self::assertSame(Frame::CODEC_PROTO, HttpWorker::codec());
        self::assertSame('127.0.0.1', $request->remoteAddr);
        self::assertSame('HTTP/1.1', $request->protocol);
        self::assertSame('GET', $request->method);
        self::assertSame('http://localhost:8080/hello?name=World&arr%5B%5D=1&arr%5B%5D=2', $request->uri);
        self::assertSame([
            'Accept' => ['*/*'],
            'Cookie' => ['sid=abc123; theme=dark%20mode'],
            'User-Agent' => ['curl/8.0'],
            'X-Multi-In' => ['v1', 'v2'],
        ], $request->headers);
        self::assertSame(['sid' => 'abc123', 'theme' => 'dark mode'], $request->cookies);
        self::assertSame('name=World&arr%5B%5D=1&arr%5B%5D=2', $request->rawQuery);
        self::assertSame(['name' => 'World', 'arr' => ['1', '2']], $request->query);
        self::assertSame('', $request->body);
        self::assertNull($request->parsed);
        self::assertFalse($request->isParsed());
        self::assertSame([], $request->uploads);
        self::assertSame([Request::PARSED_BODY_ATTRIBUTE => false], $request->attributes);
        self::assertSame('v1, v2', $request->getHeaderLine('x-multi-in'));
        self::assertSame([], $request->getHeader('Host'));
    }

    public function testTheJsonGetRequestGivesTheSameValuesAndChoosesJson(): void
    {
        $request = $this->receive('http_request_json_get');

        self::assertSame(Frame::CODEC_JSON, HttpWorker::codec());
        self::assertSame('GET', $request->method);
        self::assertSame(['v1', 'v2'], $request->headers['X-Multi-In']);
        self::assertSame(['sid' => 'abc123', 'theme' => 'dark mode'], $request->cookies);
        self::assertSame(['name' => 'World', 'arr' => ['1', '2']], $request->query);
        self::assertSame([], $request->uploads);
        self::assertSame([Request::PARSED_BODY_ATTRIBUTE => false], $request->attributes);
    }

    public function testAFormBodyIsDecodedIntoParsed(): void
    {
        $request = $this->receive('http_request_form');

        self::assertTrue($request->isParsed());
        self::assertSame(['a' => '1', 'b' => ['x', 'y'], 'c' => ['d' => 'e']], $request->parsed);
        self::assertSame('{"a":"1","b":["x","y"],"c":{"d":"e"}}', $request->body);
        self::assertSame([Request::PARSED_BODY_ATTRIBUTE => true], $request->attributes);
        self::assertSame([], $request->query);
    }

    public function testAMultipartRequestHasItsUploadTree(): void
    {
        $request = $this->receive('http_request_multipart');

        self::assertSame(['title' => 'hi'], $request->parsed);
        self::assertSame('/tmp/rr-compat/uploads/upload1000001', $request->uploads['avatar']['tmpName']);
        self::assertSame(13, $request->uploads['avatar']['size']);
        self::assertSame('two.bin', $request->uploads['docs'][0]['name']);
        self::assertSame(8, $request->uploads['docs'][1]['error']);
    }

    public function testAJsonBodyStaysRawAndHeadHasNoBody(): void
    {
        $json = $this->receive('http_request_json_body');
        self::assertNull($json->parsed);
        self::assertSame('{"x":1,"y":[]}', $json->body);

        $head = $this->receive('http_request_head');
        self::assertSame('HEAD', $head->method);
        self::assertSame('', $head->body);
    }

    /**
     * @return iterable<string, array{0: string}>
     */
    public static function emptyParsedBodies(): iterable
    {
        yield 'empty' => [''];
        yield 'empty object' => ['{}'];
        yield 'empty list' => ['[]'];
    }

    /**
     * @dataProvider emptyParsedBodies
     */
    public function testAnEmptyParsedBodyIsAnEmptyArray(string $body): void
    {
        fwrite($this->server, Psr7Support::protoRequest(['method' => 'POST', 'uri' => 'http://h/f', 'parsed' => true], $body));

        $request = $this->http->waitRequest();

        self::assertNotNull($request);
        self::assertSame([], $request->parsed);
        self::assertTrue($request->isParsed());
    }

    public function testAParsedBodyThatIsNotJsonIsAProtocolError(): void
    {
        fwrite($this->server, Psr7Support::protoRequest(['parsed' => true], 'a=1'));

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('marked the body as parsed');
        $this->http->waitRequest();
    }

    public function testCookiesJoinRepeatedValuesAndAttributesKeepTheFirst(): void
    {
        fwrite($this->server, Psr7Support::protoRequest([
            'uri' => 'http://h/',
            'headers' => ['X-A' => ['1']],
            'cookies' => ['c' => ['x', 'y']],
            'attributes' => ['ipAddress' => ['10.0.0.7', 'ignored'], Request::PARSED_BODY_ATTRIBUTE => ['1']],
        ]));

        $request = $this->http->waitRequest();

        self::assertNotNull($request);
        self::assertSame(['c' => 'x,y'], $request->cookies);
        // The decoded flag wins over an attribute of the same name.
        self::assertSame([Request::PARSED_BODY_ATTRIBUTE => false, 'ipAddress' => '10.0.0.7'], $request->attributes);
        self::assertSame('10.0.0.7', $request->getRemoteAddr());
        self::assertSame('127.0.0.1', $request->remoteAddr);
    }

    public function testJsonHeadersWithoutANameAreDropped(): void
    {
        $context = '{"remoteAddr":"::1","protocol":"HTTP/2.0","method":"GET","uri":"http://h/?a[b]=c",'
            . '"headers":{"":["x"],"0":["y"],"X-Ok":["z"],"X-Single":"s"},"cookies":null,"rawQuery":"a[b]=c",'
            . '"parsed":false,"uploads":null,"attributes":{"ipAddress":"1.2.3.4"}}';
        fwrite($this->server, Frame::encode(Frame::CODEC_JSON, [strlen($context)], $context));

        $request = $this->http->waitRequest();

        self::assertNotNull($request);
        self::assertSame(['X-Ok' => ['z'], 'X-Single' => ['s']], $request->headers);
        self::assertSame(['a' => ['b' => 'c']], $request->query);
        self::assertSame('1.2.3.4', $request->getRemoteAddr());
        self::assertSame([], $request->cookies);
    }

    public function testTheCodecIsKeptForTheLifeOfTheProcess(): void
    {
        $this->receive('http_request_json_get');
        fwrite($this->server, TestSupport::vector('http_request_get'));

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('chose the JSON codec');
        $this->http->waitRequest();
    }

    public function testAStopCommandAndAnEmptyFrameEndTheLoop(): void
    {
        fwrite($this->server, TestSupport::vector('pid_request') . TestSupport::vector('stop'));
        self::assertNull($this->http->waitRequest());

        fwrite($this->server, Frame::encode(Frame::CODEC_PROTO, [0], ''));
        self::assertNull($this->http->waitRequest());
        self::assertNull(HttpWorker::codec());
    }

    /**
     * @return iterable<string, array{0: string, 1: string}>
     */
    public static function protobufPairs(): iterable
    {
        foreach (['get', 'form', 'multipart', 'json_body', 'head'] as $name) {
            yield $name => ['http_request_' . $name, 'http_response_' . $name];
        }
        yield 'json' => ['http_request_json_get', 'http_response_json_get'];
    }

    /**
     * @dataProvider protobufPairs
     */
    public function testRespondReproducesTheCapturedFrame(string $requestVector, string $responseVector): void
    {
        $this->receive($requestVector);
        [, $body] = Psr7Support::split($responseVector);

        self::assertTrue($this->http->respond(Psr7Support::VECTOR_STATUS, $body, Psr7Support::VECTOR_HEADERS));

        self::assertSame(bin2hex(TestSupport::vector($responseVector)), bin2hex(TestSupport::readRawFrame($this->server)));
    }

    public function testAJsonContextEscapesSlashesAndWritesNoHeadersAsAnObject(): void
    {
        $this->receive('http_request_json_get');

        $this->http->respond(204, '', []);
        $this->http->respond(200, 'x', ['X-Num' => 5, 'X-Drop' => [null, []], '' => ['no name']]);

        $frames = array_map([Frame::class, 'fromBytes'], TestSupport::drainRawFrames($this->server));
        self::assertSame('{"status":204,"headers":{}}', $frames[0]->payload);
        self::assertSame(Frame::CODEC_JSON, $frames[0]->flags);
        self::assertSame('{"status":200,"headers":{"X-Num":["5"]}}x', $frames[1]->payload);
    }

    public function testAGeneratorReproducesTheCapturedStream(): void
    {
        $this->receive('http_request_stream');
        $chunks = (static function (): \Generator {
            for ($i = 1; $i <= 7; ++$i) {
                yield "chunk-$i;";
            }

            return 'end';
        })();

        self::assertTrue($this->http->respond(200, $chunks, ['Content-Type' => ['text/plain']]));

        $frames = TestSupport::drainRawFrames($this->server);
        self::assertCount(8, $frames);
        foreach ($frames as $i => $bytes) {
            self::assertSame(bin2hex(TestSupport::vector(sprintf('http_response_stream_%02d', $i + 1))), bin2hex($bytes), "frame $i");
        }
    }

    public function testEarlyHintsThenTheFinalResponseReproduceTheCapturedFrames(): void
    {
        $this->receive('http_request_early_hints');

        $this->http->respond(103, '', ['Link' => ['</style.css>; rel=preload; as=style']], false);
        $this->http->respond(200, 'after hints', ['Content-Type' => ['text/plain']]);

        self::assertSame(
            [TestSupport::vector('http_response_early_hints_01'), TestSupport::vector('http_response_early_hints_02')],
            TestSupport::drainRawFrames($this->server),
        );
    }

    public function testAnInformationalResponseCannotHaveABody(): void
    {
        $this->expectException(\InvalidArgumentException::class);
        $this->expectExceptionMessage('cannot have a body');
        $this->http->respond(103, 'body', [], false);
    }

    public function testAStreamThatDoesNotEndLeavesEveryFrameOpen(): void
    {
        $this->receive('http_request_stream');
        $part = (static function (): \Generator {
            yield 'a';

            return 'b';
        })();

        self::assertTrue($this->http->respond(200, $part, [], false));
        self::assertTrue($this->http->respond(200, ['c'], [], false));
        self::assertTrue($this->http->respond(200, 'd'));

        $frames = array_map([Frame::class, 'fromBytes'], TestSupport::drainRawFrames($this->server));
        $context = Proto::encodeResponse(200, []);
        self::assertSame(
            [[Frame::STREAM, 'a'], [Frame::STREAM, 'b'], [Frame::STREAM, 'c'], [0, 'd']],
            array_map(static fn (Frame $f): array => [$f->byte10, substr($f->payload, $f->options[0])], $frames),
        );
        self::assertSame($context, substr($frames[0]->payload, 0, $frames[0]->options[0]));
    }

    public function testAStoppedStreamReturnsFalseAndIsAcknowledged(): void
    {
        $this->receive('http_request_stream');
        $server = $this->server;
        $stopped = false;
        $chunks = (static function () use ($server, &$stopped): \Generator {
            try {
                for ($i = 1; $i <= 20; ++$i) {
                    if ($i === 8) {
                        fwrite($server, TestSupport::vector('stream_stop'));
                    }
                    yield "chunk-$i;";
                }
            } catch (StreamStoppedException) {
                $stopped = true;
            }

            return 'never';
        })();

        self::assertFalse($this->http->respond(200, $chunks, ['Content-Type' => ['text/plain']]));

        self::assertTrue($stopped);
        $frames = TestSupport::drainRawFrames($this->server);
        self::assertCount(8, $frames);
        self::assertSame(TestSupport::vector('http_response_stream_06'), $frames[5]);
        self::assertSame(TestSupport::vector('stream_stop_ack'), $frames[7]);
    }

    public function testErrorAndStopMatchTheCapturedFrames(): void
    {
        $this->receive('http_request_error');
        $this->http->error('boom: worker error');
        $this->http->stop();

        self::assertSame(
            [TestSupport::vector('http_response_error'), TestSupport::vector('worker_stop_request')],
            TestSupport::drainRawFrames($this->server),
        );
    }

    private function receive(string $vector): Request
    {
        fwrite($this->server, TestSupport::vector($vector));
        $request = $this->http->waitRequest();
        self::assertNotNull($request);

        return $request;
    }
}
