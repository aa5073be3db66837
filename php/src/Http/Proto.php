<?php

declare(strict_types=1);

namespace Courser\Http;

use Courser\Exception\ProtocolException;

/**
 * A small protobuf (proto3) reader and writer for the two messages of the
 * RoadRunner HTTP plugin, package http.v1:
 *
 *   message HeaderValue { repeated bytes value = 1; }
 *   message Request {
 *     string remote_addr = 1; string protocol = 2; string method = 3; string uri = 4;
 *     map<string, HeaderValue> header = 5; map<string, HeaderValue> cookies = 6;
 *     string raw_query = 7; bool parsed = 8; bytes uploads = 9;
 *     map<string, HeaderValue> attributes = 10;
 *   }
 *   message Response { int64 status = 1; map<string, HeaderValue> headers = 2; }
 *
 * A map is a repeated length-delimited entry message with the key as field 1
 * and the value as field 2. The writer follows the official PHP library: fields
 * in field-number order, defaults (0, "", false) left out, map entries in the
 * order of the PHP array with both key and value written. The reader accepts
 * fields and map entries in any order, skips unknown fields, and lets the
 * last entry win when a map key repeats.
 */
final class Proto
{
    public const WIRE_VARINT = 0;
    public const WIRE_FIXED64 = 1;
    public const WIRE_LEN = 2;
    public const WIRE_FIXED32 = 5;

    /** The string fields of http.v1.Request, by number. */
    private const REQUEST_STRINGS = [1 => 'remoteAddr', 2 => 'protocol', 3 => 'method', 4 => 'uri', 7 => 'rawQuery', 9 => 'uploads'];

    /** The map fields of http.v1.Request, by number. */
    private const REQUEST_MAPS = [5 => 'headers', 6 => 'cookies', 10 => 'attributes'];

    /**
     * Decodes an http.v1.Request.
     *
     * @return array{remoteAddr: string, protocol: string, method: string, uri: string,
     *               headers: array<string, list<string>>, cookies: array<string, list<string>>,
     *               rawQuery: string, parsed: bool, uploads: string, attributes: array<string, list<string>>}
     *               every field, with its default when absent; uploads is the raw JSON ('' when absent)
     *
     * @throws ProtocolException when the bytes are not a valid message
     */
    public static function decodeRequest(string $bytes): array
    {
        $request = [
            'remoteAddr' => '', 'protocol' => '', 'method' => '', 'uri' => '',
            'headers' => [], 'cookies' => [], 'rawQuery' => '', 'parsed' => false,
            'uploads' => '', 'attributes' => [],
        ];

        foreach (self::fields($bytes) as [$number, $wireType, $value]) {
            if (isset(self::REQUEST_STRINGS[$number])) {
                self::expectWireType($number, $wireType, self::WIRE_LEN);
                $request[self::REQUEST_STRINGS[$number]] = $value;
            } elseif (isset(self::REQUEST_MAPS[$number])) {
                self::expectWireType($number, $wireType, self::WIRE_LEN);
                [$key, $values] = self::decodeHeaderEntry($value);
                $request[self::REQUEST_MAPS[$number]][$key] = $values;
            } elseif ($number === 8) {
                self::expectWireType($number, $wireType, self::WIRE_VARINT);
                $request['parsed'] = $value !== 0;
            }
        }

        return $request;
    }

    /**
     * Encodes an http.v1.Request; the inverse of decodeRequest(). The server
     * side of the protocol, used by tests and tools.
     *
     * @param array{remoteAddr?: string, protocol?: string, method?: string, uri?: string,
     *              headers?: array<string, list<string>>, cookies?: array<string, list<string>>,
     *              rawQuery?: string, parsed?: bool, uploads?: string,
     *              attributes?: array<string, list<string>>} $request
     */
    public static function encodeRequest(array $request): string
    {
        $numbers = array_flip(self::REQUEST_STRINGS) + array_flip(self::REQUEST_MAPS) + ['parsed' => 8];
        asort($numbers);

        $bytes = '';
        foreach ($numbers as $name => $number) {
            $value = $request[$name] ?? null;
            if ($number === 8) {
                $bytes .= $value ? self::tag(8, self::WIRE_VARINT) . self::varint(1) : '';
            } elseif (isset(self::REQUEST_MAPS[$number])) {
                $bytes .= self::encodeHeaderMap($number, (array) $value);
            } elseif ((string) $value !== '') {
                $bytes .= self::lengthDelimited($number, (string) $value);
            }
        }

        return $bytes;
    }

    /**
     * Encodes an http.v1.Response: the status (left out when 0) and the headers
     * in the order given. Headers without values are left out, since an empty
     * HeaderValue means nothing to the server.
     *
     * @param array<string, list<string>> $headers header name => values
     */
    public static function encodeResponse(int $status, array $headers): string
    {
        return ($status !== 0 ? self::tag(1, self::WIRE_VARINT) . self::varint($status) : '')
            . self::encodeHeaderMap(2, $headers);
    }

    /**
     * Decodes an http.v1.Response; the inverse of encodeResponse().
     *
     * @return array{status: int, headers: array<string, list<string>>}
     *
     * @throws ProtocolException when the bytes are not a valid message
     */
    public static function decodeResponse(string $bytes): array
    {
        $response = ['status' => 0, 'headers' => []];

        foreach (self::fields($bytes) as [$number, $wireType, $value]) {
            if ($number === 1) {
                self::expectWireType($number, $wireType, self::WIRE_VARINT);
                $response['status'] = $value;
            } elseif ($number === 2) {
                self::expectWireType($number, $wireType, self::WIRE_LEN);
                [$key, $values] = self::decodeHeaderEntry($value);
                $response['headers'][$key] = $values;
            }
        }

        return $response;
    }

    /**
     * Encodes an unsigned varint. A negative int is written as its 64-bit
     * two's complement (10 bytes), as protobuf does for int64.
     */
    public static function varint(int $value): string
    {
        $bytes = '';
        while ($value < 0 || $value > 0x7F) {
            $bytes .= chr(($value & 0x7F) | 0x80);
            // A logical shift right by 7: clear the sign bits that >> copies in.
            $value = ($value >> 7) & (PHP_INT_MAX >> 6);
        }

        return $bytes . chr($value);
    }

    /**
     * Reads a varint at $offset and moves $offset past it. Values up to 2^64-1
     * are read; those above PHP_INT_MAX come out negative (two's complement).
     *
     * @throws ProtocolException when the varint is cut off or longer than 10 bytes
     */
    public static function readVarint(string $bytes, int &$offset): int
    {
        $value = 0;
        $length = strlen($bytes);

        for ($shift = 0; $shift < 64; $shift += 7) {
            if ($offset >= $length) {
                throw new ProtocolException('A protobuf varint is cut off at the end of the message.');
            }
            $byte = ord($bytes[$offset++]);
            $value |= ($byte & 0x7F) << $shift;
            if ($byte < 0x80) {
                return $value;
            }
        }

        throw new ProtocolException('A protobuf varint is longer than 10 bytes.');
    }

    /**
     * Encodes a field key: (field number << 3) | wire type.
     */
    public static function tag(int $number, int $wireType): string
    {
        return self::varint($number << 3 | $wireType);
    }

    /**
     * Encodes a length-delimited field (string, bytes or embedded message).
     */
    public static function lengthDelimited(int $number, string $value): string
    {
        return self::tag($number, self::WIRE_LEN) . self::varint(strlen($value)) . $value;
    }

    /**
     * Splits a message into its fields, in wire order.
     *
     * @return \Generator<int, array{0: int, 1: int, 2: int|string}> [field number, wire type, value]:
     *                                                                an int for varints, the raw bytes otherwise
     *
     * @throws ProtocolException on a malformed message
     */
    public static function fields(string $bytes): \Generator
    {
        $offset = 0;
        $length = strlen($bytes);

        while ($offset < $length) {
            $key = self::readVarint($bytes, $offset);
            $number = $key >> 3;
            $wireType = $key & 0x07;
            if ($number < 1) {
                throw new ProtocolException(sprintf('Invalid protobuf field number %d.', $number));
            }

            $size = match ($wireType) {
                self::WIRE_VARINT => null,
                self::WIRE_FIXED64 => 8,
                self::WIRE_FIXED32 => 4,
                self::WIRE_LEN => self::readVarint($bytes, $offset),
                default => throw new ProtocolException(sprintf(
                    'Unsupported protobuf wire type %d (field %d).',
                    $wireType,
                    $number,
                )),
            };

            if ($size === null) {
                yield [$number, $wireType, self::readVarint($bytes, $offset)];
                continue;
            }
            if ($size < 0 || $size > $length - $offset) {
                throw new ProtocolException(sprintf(
                    'Protobuf field %d announces %d bytes, but only %d remain.',
                    $number,
                    $size,
                    $length - $offset,
                ));
            }
            yield [$number, $wireType, (string) substr($bytes, $offset, $size)];
            $offset += $size;
        }
    }

    /**
     * Decodes one entry of a map<string, HeaderValue>.
     *
     * @return array{0: string, 1: list<string>}
     */
    private static function decodeHeaderEntry(string $entry): array
    {
        $key = '';
        $values = [];

        foreach (self::fields($entry) as [$number, $wireType, $value]) {
            if ($number === 1) {
                self::expectWireType($number, $wireType, self::WIRE_LEN);
                $key = $value;
            } elseif ($number === 2) {
                self::expectWireType($number, $wireType, self::WIRE_LEN);
                // A repeated message field that appears twice is merged: the values add up.
                foreach (self::fields($value) as [$valueNumber, $valueWireType, $item]) {
                    if ($valueNumber === 1) {
                        self::expectWireType($valueNumber, $valueWireType, self::WIRE_LEN);
                        $values[] = $item;
                    }
                }
            }
        }

        return [$key, $values];
    }

    /**
     * Encodes a map<string, HeaderValue> field.
     *
     * @param array<array-key, list<string>> $map
     */
    private static function encodeHeaderMap(int $number, array $map): string
    {
        $bytes = '';
        foreach ($map as $key => $values) {
            if ($values === []) {
                continue;
            }
            $headerValue = '';
            foreach ($values as $value) {
                $headerValue .= self::lengthDelimited(1, (string) $value);
            }
            $bytes .= self::lengthDelimited(
                $number,
                self::lengthDelimited(1, (string) $key) . self::lengthDelimited(2, $headerValue),
            );
        }

        return $bytes;
    }

    private static function expectWireType(int $number, int $actual, int $expected): void
    {
        if ($actual !== $expected) {
            throw new ProtocolException(sprintf(
                'Protobuf field %d has wire type %d, expected %d.',
                $number,
                $actual,
                $expected,
            ));
        }
    }
}
