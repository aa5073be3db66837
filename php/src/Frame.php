<?php

declare(strict_types=1);

namespace Courser;

use Courser\Exception\ProtocolException;

/**
 * One Goridge v3 frame, and the codec that turns frames into bytes and back.
 *
 * Layout (all integers unsigned 32-bit little-endian):
 *
 *   byte 0      high nibble: version (1), low nibble: HL, the header length in 32-bit words
 *   byte 1      flags (CONTROL, CODEC_*, ERROR)
 *   bytes 2-5   payload length; the options are not counted
 *   bytes 6-9   CRC-32 (zlib crc32) of bytes 0..5
 *   byte 10     stream bits (STREAM, STOP, PING, PONG)
 *   byte 11     reserved, always 0
 *   then        HL - 3 option words, then the payload
 *
 * Every integer is packed with 'V' (explicit little-endian) so the bytes do
 * not depend on the machine's byte order.
 */
final class Frame
{
    public const VERSION = 1;

    /** Size of the fixed part of the header, before the options. */
    public const HEADER_SIZE = 12;

    /** Most options a frame may carry; RoadRunner's Go reader panics past 10. */
    public const MAX_OPTIONS = 10;

    public const CONTROL = 0x01;
    public const CODEC_RAW = 0x04;
    public const CODEC_JSON = 0x08;
    public const CODEC_MSGPACK = 0x10;
    public const CODEC_GOB = 0x20;
    public const ERROR = 0x40;
    public const CODEC_PROTO = 0x80;

    public const STREAM = 0x01;
    public const STOP = 0x02;
    public const PING = 0x04;
    public const PONG = 0x08;

    /**
     * @param int       $flags   the flags byte (byte 1)
     * @param list<int> $options the option words, each 0 .. 2^32-1
     * @param string    $payload the payload bytes
     * @param int       $byte10  the stream bits (byte 10)
     */
    public function __construct(
        public readonly int $flags,
        public readonly array $options,
        public readonly string $payload,
        public readonly int $byte10 = 0,
    ) {
    }

    /**
     * Encodes a complete frame: header, CRC, options and payload.
     *
     * @param list<int> $options
     *
     * @throws ProtocolException when a value does not fit its field
     */
    public static function encode(int $flags, array $options, string $payload, int $byte10 = 0): string
    {
        if (count($options) > self::MAX_OPTIONS) {
            throw new ProtocolException(sprintf(
                'A frame carries at most %d options, %d given.',
                self::MAX_OPTIONS,
                count($options),
            ));
        }
        if ($flags < 0 || $flags > 0xFF || $byte10 < 0 || $byte10 > 0xFF) {
            throw new ProtocolException('The flags and byte10 must each fit in one byte.');
        }
        foreach ($options as $option) {
            if (!is_int($option) || $option < 0 || $option > 0xFFFFFFFF) {
                throw new ProtocolException('Every option must be an integer from 0 to 2^32-1.');
            }
        }

        $head = pack('CCV', self::VERSION << 4 | (3 + count($options)), $flags, strlen($payload));

        return $head
            . pack('VCC', crc32($head), $byte10, 0)
            . ($options === [] ? '' : pack('V*', ...$options))
            . $payload;
    }

    /**
     * Checks the fixed 12-byte header (version and CRC) and tells how many
     * bytes of options and of payload follow it.
     *
     * @return array{0: int, 1: int} the option bytes and the payload length
     *
     * @throws ProtocolException when the header is malformed
     */
    public static function parseHeader(string $header): array
    {
        if (strlen($header) !== self::HEADER_SIZE) {
            throw new ProtocolException(sprintf(
                'A frame header is %d bytes, got %d.',
                self::HEADER_SIZE,
                strlen($header),
            ));
        }

        $fields = unpack('Cfirst/Cflags/Vlength/Vcrc', $header);
        $version = $fields['first'] >> 4;
        $headerWords = $fields['first'] & 0x0F;

        if ($version !== self::VERSION) {
            throw new ProtocolException(sprintf(
                'Unsupported frame version %d (header %s); is something else writing to the relay?',
                $version,
                bin2hex($header),
            ));
        }
        if ($fields['crc'] !== crc32(substr($header, 0, 6))) {
            throw new ProtocolException(sprintf('Frame header CRC mismatch (header %s).', bin2hex($header)));
        }
        if ($headerWords < 3) {
            throw new ProtocolException(sprintf('Frame header length %d is below the minimum of 3 words.', $headerWords));
        }

        return [4 * ($headerWords - 3), $fields['length']];
    }

    /**
     * Builds a frame from its three parts as read from a relay: the 12-byte
     * header, the raw option bytes and the payload.
     *
     * @throws ProtocolException when the parts do not match the header
     */
    public static function decode(string $header, string $options, string $payload): self
    {
        [$optionBytes, $payloadLength] = self::parseHeader($header);

        if (strlen($options) !== $optionBytes || strlen($payload) !== $payloadLength) {
            throw new ProtocolException(sprintf(
                'The header announces %d option bytes and a %d-byte payload, got %d and %d.',
                $optionBytes,
                $payloadLength,
                strlen($options),
                strlen($payload),
            ));
        }

        return new self(
            ord($header[1]),
            $options === '' ? [] : array_values(unpack('V*', $options)),
            $payload,
            ord($header[10]),
        );
    }

    /**
     * Decodes one complete frame held in a string, with nothing after it.
     *
     * @throws ProtocolException when the bytes are not exactly one frame
     */
    public static function fromBytes(string $bytes): self
    {
        $header = substr($bytes, 0, self::HEADER_SIZE);
        [$optionBytes, $payloadLength] = self::parseHeader($header);

        if (strlen($bytes) !== self::HEADER_SIZE + $optionBytes + $payloadLength) {
            throw new ProtocolException(sprintf(
                'Expected a %d-byte frame, got %d bytes.',
                self::HEADER_SIZE + $optionBytes + $payloadLength,
                strlen($bytes),
            ));
        }

        return self::decode(
            $header,
            substr($bytes, self::HEADER_SIZE, $optionBytes),
            substr($bytes, self::HEADER_SIZE + $optionBytes),
        );
    }

    /**
     * Encodes this frame; see encode().
     */
    public function toBytes(): string
    {
        return self::encode($this->flags, $this->options, $this->payload, $this->byte10);
    }

    /**
     * Tells whether all the given bits are set in the flags byte.
     */
    public function hasFlag(int $flag): bool
    {
        return ($this->flags & $flag) === $flag;
    }

    /**
     * Tells whether all the given bits are set in byte 10.
     */
    public function hasByte10(int $bits): bool
    {
        return ($this->byte10 & $bits) === $bits;
    }
}
