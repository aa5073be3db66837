<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Exception\ProtocolException;
use Courser\Http\Proto;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Psr7Support.php';

/**
 * The protobuf reader and writer, against the captured vectors.
 */
final class ProtoTest extends TestCase
{
    /**
     * @return iterable<string, array{0: int, 1: string}>
     */
    public static function varints(): iterable
    {
        yield 'zero' => [0, '00'];
        yield 'one byte' => [1, '01'];
        yield 'largest one byte' => [127, '7f'];
        yield 'two bytes' => [128, '8001'];
        yield '201' => [201, 'c901'];
        yield '300' => [300, 'ac02'];
        yield 'largest int' => [PHP_INT_MAX, 'ffffffffffffffff7f'];
        yield 'minus one as int64' => [-1, 'ffffffffffffffffff01'];
    }

    /**
     * @dataProvider varints
     */
    public function testVarintsEncodeAndDecode(int $value, string $hex): void
    {
        self::assertSame($hex, bin2hex(Proto::varint($value)));

        $offset = 0;
        self::assertSame($value, Proto::readVarint(hex2bin($hex) . 'rest', $offset));
        self::assertSame(strlen($hex) / 2, $offset);
    }

    public function testACutOffVarintIsAnError(): void
    {
        $offset = 0;
        $this->expectException(ProtocolException::class);
        Proto::readVarint("\x80\x80", $offset);
    }

    public function testAVarintLongerThanTenBytesIsAnError(): void
    {
        $offset = 0;
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('longer than 10 bytes');
        Proto::readVarint(str_repeat("\xff", 11) . "\x01", $offset);
    }

    public function testTheGetRequestDecodesToTheDocumentedValues(): void
    {
        [$context] = Psr7Support::split('http_request_get');

        self::assertSame([
            'remoteAddr' => '127.0.0.1',
            'protocol' => 'HTTP/1.1',
            'method' => 'GET',
            'uri' => 'http://localhost:8080/hello?name=World&arr%5B%5D=1&arr%5B%5D=2',
            'headers' => [
                'Accept' => ['*/*'],
                'Cookie' => ['sid=abc123; theme=dark%20mode'],
                'User-Agent' => ['curl/8.0'],
                'X-Multi-In' => ['v1', 'v2'],
            ],
            'cookies' => ['sid' => ['abc123'], 'theme' => ['dark mode']],
            'rawQuery' => 'name=World&arr%5B%5D=1&arr%5B%5D=2',
            'parsed' => false,
            'uploads' => '',
            'attributes' => [],
        ], Proto::decodeRequest($context));
    }

    public function testTheFormRequestIsParsedAndHasNoQuery(): void
    {
        [$context, $body] = Psr7Support::split('http_request_form');
        $request = Proto::decodeRequest($context);

        self::assertSame('POST', $request['method']);
        self::assertTrue($request['parsed']);
        self::assertSame(['application/x-www-form-urlencoded'], $request['headers']['Content-Type']);
        self::assertSame(['23'], $request['headers']['Content-Length']);
        self::assertSame('', $request['rawQuery']);
        self::assertSame('{"a":"1","b":["x","y"],"c":{"d":"e"}}', $body);
    }

    public function testTheMultipartRequestCarriesTheUploadTreeAsJson(): void
    {
        [$context, $body] = Psr7Support::split('http_request_multipart');
        $request = Proto::decodeRequest($context);

        self::assertTrue($request['parsed']);
        self::assertSame('{"title":"hi"}', $body);
        $uploads = json_decode($request['uploads'], true, 512, JSON_THROW_ON_ERROR);
        self::assertSame(['name' => 'me.txt', 'mime' => 'text/plain', 'size' => 13, 'error' => 0, 'tmpName' => '/tmp/rr-compat/uploads/upload1000001'], $uploads['avatar']);
        self::assertCount(2, $uploads['docs']);
        self::assertSame(['name' => 'evil.php', 'mime' => 'text/x-php', 'size' => 0, 'error' => 8, 'tmpName' => ''], $uploads['docs'][1]);
    }

    public function testTheJsonBodyAndHeadRequestsAreNotParsed(): void
    {
        [$context, $body] = Psr7Support::split('http_request_json_body');
        $json = Proto::decodeRequest($context);
        self::assertFalse($json['parsed']);
        self::assertSame(['application/json'], $json['headers']['Content-Type']);
        self::assertSame('{"x":1,"y":[]}', $body);

        [$context, $body] = Psr7Support::split('http_request_head');
        $head = Proto::decodeRequest($context);
        self::assertSame('HEAD', $head['method']);
        self::assertSame('http://localhost:8080/hello', $head['uri']);
        self::assertSame(['Accept' => ['*/*']], $head['headers']);
        self::assertSame('', $body);
    }

    /**
     * @return iterable<string, array{0: string}>
     */
    public static function requestVectors(): iterable
    {
        foreach (['get', 'form', 'multipart', 'json_body', 'head', 'stream', 'error', 'early_hints'] as $name) {
            yield $name => ['http_request_' . $name];
        }
    }

    /**
     * @dataProvider requestVectors
     */
    public function testEveryRequestReencodesToTheSameBytes(string $vector): void
    {
        [$context] = Psr7Support::split($vector);

        self::assertSame(bin2hex($context), bin2hex(Proto::encodeRequest(Proto::decodeRequest($context))));
    }

    /**
     * @return iterable<string, array{0: string, 1: int, 2: array<string, list<string>>}>
     */
    public static function responseVectors(): iterable
    {
        foreach (['get', 'form', 'multipart', 'json_body', 'head'] as $name) {
            yield $name => ['http_response_' . $name, Psr7Support::VECTOR_STATUS, Psr7Support::VECTOR_HEADERS];
        }
        yield 'stream chunk' => ['http_response_stream_01', 200, ['Content-Type' => ['text/plain']]];
        yield 'early hints' => ['http_response_early_hints_01', 103, ['Link' => ['</style.css>; rel=preload; as=style']]];
        yield 'after early hints' => ['http_response_early_hints_02', 200, ['Content-Type' => ['text/plain']]];
    }

    /**
     * @dataProvider responseVectors
     *
     * @param array<string, list<string>> $headers
     */
    public function testTheResponseContextMatchesTheCapturedBytes(string $vector, int $status, array $headers): void
    {
        [$context] = Psr7Support::split($vector);

        self::assertSame(bin2hex($context), bin2hex(Proto::encodeResponse($status, $headers)));
        self::assertSame(['status' => $status, 'headers' => $headers], Proto::decodeResponse($context));
    }

    public function testAZeroStatusAndNoHeadersEncodeToNothing(): void
    {
        self::assertSame('', Proto::encodeResponse(0, []));
        self::assertSame('', Proto::encodeResponse(0, ['X-Empty' => []]));
    }

    public function testMapEntriesMayComeInAnyOrderAndTheLastDuplicateWins(): void
    {
        $entry = static fn (string $key, string ...$values): string => Proto::lengthDelimited(5, Proto::lengthDelimited(1, $key)
            . Proto::lengthDelimited(2, implode('', array_map(static fn (string $v): string => Proto::lengthDelimited(1, $v), $values))));
        // Value before key, an unknown field (99, varint) and a repeated key.
        $swapped = Proto::lengthDelimited(5, Proto::lengthDelimited(2, Proto::lengthDelimited(1, 'b')) . Proto::lengthDelimited(1, 'Zed'));
        $bytes = Proto::lengthDelimited(3, 'PUT') . $entry('X-A', 'first') . $swapped
            . Proto::tag(99, Proto::WIRE_VARINT) . Proto::varint(300)
            . Proto::tag(98, Proto::WIRE_FIXED32) . 'abcd'
            . $entry('X-A', 'second', 'third') . Proto::tag(8, Proto::WIRE_VARINT) . Proto::varint(1);

        $request = Proto::decodeRequest($bytes);

        self::assertSame('PUT', $request['method']);
        self::assertSame(['X-A' => ['second', 'third'], 'Zed' => ['b']], $request['headers']);
        self::assertTrue($request['parsed']);
    }

    public function testALengthBeyondTheMessageIsAnError(): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('announces 10 bytes');
        Proto::decodeRequest("\x0a\x0aabc");
    }

    public function testAWrongWireTypeIsAnError(): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('field 3 has wire type 0');
        Proto::decodeRequest("\x18\x01");
    }

    public function testGroupsAreRejected(): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('wire type 3');
        Proto::decodeRequest("\x7b");
    }
}
