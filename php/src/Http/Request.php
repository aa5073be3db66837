<?php

declare(strict_types=1);

namespace Courser\Http;

/**
 * One HTTP request as the server sent it, decoded; a plain value object.
 *
 * Built by HttpWorker::waitRequest() from either codec (protobuf or JSON).
 */
final class Request
{
    /** The attribute that tells whether the body was a parsed form (always set). */
    public const PARSED_BODY_ATTRIBUTE = 'rr_parsed_body';

    /** The attribute that, when a server middleware sets it, overrides the client address. */
    public const IP_ADDRESS_ATTRIBUTE = 'ipAddress';

    /**
     * @param string                       $remoteAddr the client IP, without port or brackets
     * @param string                       $protocol   "HTTP/1.1", "HTTP/2.0", "HTTP/1.0"
     * @param string                       $method     "GET", "POST", ...
     * @param string                       $uri        the absolute URI (scheme, host, path, query)
     * @param array<string, list<string>>  $headers    the request headers by canonical name; Host is not
     *                                                 among them (take it from $uri)
     * @param array<string, string>        $cookies    cookie values, already URL-unescaped
     * @param array<array-key, mixed>      $query      $rawQuery parsed as PHP's parse_str() does
     * @param string                       $body       the body as sent: raw bytes, or the JSON data tree of a
     *                                                 form when the server parsed it
     * @param array<array-key, mixed>|null $parsed     the decoded form data tree when the server parsed the
     *                                                 body (an empty body or {} gives []), null otherwise
     * @param array<array-key, mixed>      $uploads    the upload tree: the field names, nested as in the
     *                                                 form, lead to leaves {name, mime, size, error, tmpName}
     * @param array<string, mixed>         $attributes values set by server middleware, and always
     *                                                 rr_parsed_body (bool)
     * @param string                       $rawQuery   the query string as received
     */
    public function __construct(
        public readonly string $remoteAddr = '',
        public readonly string $protocol = 'HTTP/1.1',
        public readonly string $method = 'GET',
        public readonly string $uri = '',
        public readonly array $headers = [],
        public readonly array $cookies = [],
        public readonly array $query = [],
        public readonly string $body = '',
        public readonly ?array $parsed = null,
        public readonly array $uploads = [],
        public readonly array $attributes = [],
        public readonly string $rawQuery = '',
    ) {
    }

    /**
     * Tells whether the server parsed the body into a form data tree.
     */
    public function isParsed(): bool
    {
        return $this->parsed !== null;
    }

    /**
     * Returns the client address: the ipAddress attribute when a server
     * middleware set one, otherwise remoteAddr.
     */
    public function getRemoteAddr(): string
    {
        $address = $this->attributes[self::IP_ADDRESS_ATTRIBUTE] ?? null;

        return is_string($address) && $address !== '' ? $address : $this->remoteAddr;
    }

    /**
     * Returns the values of a header, found without regard to case.
     *
     * @return list<string> the values, [] when the header is absent
     */
    public function getHeader(string $name): array
    {
        if (isset($this->headers[$name])) {
            return $this->headers[$name];
        }
        foreach ($this->headers as $key => $values) {
            if (strcasecmp((string) $key, $name) === 0) {
                return $values;
            }
        }

        return [];
    }

    /**
     * Returns the values of a header joined with ", ", or "" when it is absent.
     */
    public function getHeaderLine(string $name): string
    {
        return implode(', ', $this->getHeader($name));
    }
}
