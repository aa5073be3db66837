<?php

declare(strict_types=1);

namespace Courser\Tests;

use Courser\Exception\ProtocolException;
use Courser\Frame;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/TestSupport.php';

final class FrameTest extends TestCase
{
    /**
     * @return array<string, array{0: string}>
     */
    public function vectorProvider(): array
    {
        $cases = [];
        foreach (glob(TestSupport::vectorsDir() . '/*.hex') ?: [] as $path) {
            $cases[basename($path, '.hex')] = [basename($path, '.hex')];
        }

        return $cases;
    }

    public function testTheVectorDirectoryIsFound(): void
    {
        self::assertGreaterThanOrEqual(57, count($this->vectorProvider()), 'Set COURSER_VECTORS to the vectors directory.');
    }

    /**
     * @dataProvider vectorProvider
     */
    public function testEveryVectorDecodesAndReencodesByteForByte(string $name): void
    {
        $bytes = TestSupport::vector($name);

        $fields = unpack('Cfirst/Cflags/Vlength/Vcrc', $bytes);
        self::assertSame(1, $fields['first'] >> 4, 'version nibble');
        self::assertSame(crc32(substr($bytes, 0, 6)), $fields['crc'], 'header CRC');

        $frame = Frame::fromBytes($bytes);
        self::assertSame(($fields['first'] & 0x0F) - 3, count($frame->options));
        self::assertSame($fields['length'], strlen($frame->payload));
        self::assertSame($fields['flags'], $frame->flags);
        self::assertSame(ord($bytes[10]), $frame->byte10);
        self::assertSame($bytes, $frame->toBytes());
        self::assertSame($bytes, Frame::encode($frame->flags, $frame->options, $frame->payload, $frame->byte10));
    }

    public function testDecodedFieldsOfKnownVectors(): void
    {
        $pid = Frame::fromBytes(TestSupport::vector('pid_request'));
        self::assertSame(0x09, $pid->flags);
        self::assertTrue($pid->hasFlag(Frame::CONTROL | Frame::CODEC_JSON));
        self::assertSame([], $pid->options);
        self::assertSame('{"pid":1651}', $pid->payload);

        $get = Frame::fromBytes(TestSupport::vector('http_response_get'));
        self::assertSame(Frame::CODEC_PROTO, $get->flags);
        self::assertSame([106], $get->options);
        self::assertSame(558, strlen($get->payload));

        $rpc = Frame::fromBytes(TestSupport::vector('rpc_request_resetter_Reset'));
        self::assertSame([2, 14], $rpc->options);
        self::assertSame('resetter.Reset"http"', $rpc->payload);

        $chunk = Frame::fromBytes(TestSupport::vector('http_response_stream_06'));
        self::assertTrue($chunk->hasByte10(Frame::STREAM | Frame::PING));
        self::assertFalse($chunk->hasByte10(Frame::PONG));
    }

    public function testEncodeBuildsTheConstantControlFrames(): void
    {
        self::assertSame(TestSupport::vector('pong'), Frame::encode(0, [], '', Frame::PONG));
        self::assertSame(TestSupport::vector('stream_stop'), Frame::encode(0, [], '', Frame::STOP));
        self::assertSame(TestSupport::vector('stop'), Frame::encode(Frame::CONTROL | Frame::CODEC_JSON, [], '{"stop":true}'));
        self::assertSame('13', bin2hex(Frame::encode(0, [], '')[0]));
        self::assertSame('14', bin2hex(Frame::encode(0, [1], '')[0]));
        self::assertSame('15', bin2hex(Frame::encode(0, [1, 2], '')[0]));
    }

    public function testOptionsAndLengthsAreLittleEndian(): void
    {
        $bytes = Frame::encode(0, [0x01020304], str_repeat('x', 0x0102));

        self::assertSame('02010000', bin2hex(substr($bytes, 2, 4)));
        self::assertSame('04030201', bin2hex(substr($bytes, 12, 4)));
    }

    public function testACorruptCrcIsRejected(): void
    {
        $bytes = TestSupport::vector('stop');
        $bytes[6] = chr(ord($bytes[6]) ^ 0xFF);

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('CRC');
        Frame::fromBytes($bytes);
    }

    public function testAnotherVersionIsRejected(): void
    {
        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('version');
        Frame::parseHeader(substr('Hello from PHP', 0, 12));
    }

    public function testAHeaderLengthBelowThreeIsRejected(): void
    {
        $head = pack('CCV', 0x12, 0, 0);

        $this->expectException(ProtocolException::class);
        $this->expectExceptionMessage('minimum');
        Frame::parseHeader($head . pack('VCC', crc32($head), 0, 0));
    }

    public function testATruncatedFrameIsRejected(): void
    {
        $this->expectException(ProtocolException::class);
        Frame::fromBytes(substr(TestSupport::vector('stop'), 0, -1));
    }

    public function testDecodeChecksThePartsAgainstTheHeader(): void
    {
        $bytes = TestSupport::vector('worker_stop_request');

        $this->expectException(ProtocolException::class);
        Frame::decode(substr($bytes, 0, 12), '', substr($bytes, 12));
    }

    public function testMoreThanTenOptionsAreRefused(): void
    {
        $this->expectException(ProtocolException::class);
        Frame::encode(0, range(1, 11), '');
    }

    public function testAnOptionOutsideU32IsRefused(): void
    {
        $this->expectException(ProtocolException::class);
        Frame::encode(0, [-1], '');
    }
}
