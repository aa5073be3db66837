<?php

declare(strict_types=1);

namespace Courser\Tests\Http;

use Courser\Http\Globals;
use Courser\Http\HttpWorker;
use Courser\Http\Request;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/Psr7Support.php';

/**
 * The superglobals helper.
 */
final class GlobalsTest extends TestCase
{
    /** @var array<string, array<array-key, mixed>> */
    private array $saved;

    protected function setUp(): void
    {
        $this->saved = ['get' => $_GET, 'post' => $_POST, 'cookie' => $_COOKIE, 'files' => $_FILES, 'server' => $_SERVER, 'request' => $_REQUEST];
    }

    protected function tearDown(): void
    {
        [$_GET, $_POST, $_COOKIE, $_FILES, $_SERVER, $_REQUEST] = array_values($this->saved);
    }

    public function testTheGetVectorFillsTheSuperglobals(): void
    {
        [$context, $body] = Psr7Support::split('http_request_get');
        $_SERVER['HTTP_STALE'] = 'from the environment';

        Globals::populate(HttpWorker::requestFromProto($context, $body));

        self::assertSame(['name' => 'World', 'arr' => ['1', '2']], $_GET);
        self::assertSame([], $_POST);
        self::assertSame(['sid' => 'abc123', 'theme' => 'dark mode'], $_COOKIE);
        self::assertSame([], $_FILES);
        self::assertSame('/hello?name=World&arr%5B%5D=1&arr%5B%5D=2', $_SERVER['REQUEST_URI']);
        self::assertSame('GET', $_SERVER['REQUEST_METHOD']);
        self::assertSame('127.0.0.1', $_SERVER['REMOTE_ADDR']);
        self::assertSame('HTTP/1.1', $_SERVER['SERVER_PROTOCOL']);
        self::assertSame('sid=abc123; theme=dark%20mode', $_SERVER['HTTP_COOKIE']);
        self::assertSame('localhost:8080', $_SERVER['HTTP_HOST']);
        self::assertSame('localhost', $_SERVER['SERVER_NAME']);
        self::assertArrayNotHasKey('HTTPS', $_SERVER);
        self::assertArrayNotHasKey('HTTP_STALE', $_SERVER);
        self::assertSame($this->saved['server']['argv'] ?? null, $_SERVER['argv'] ?? null);
        self::assertSame(['name' => 'World', 'arr' => ['1', '2']], $_REQUEST);
    }

    public function testAMultipartRequestFillsPostAndFilesInPhpsLayout(): void
    {
        [$context, $body] = Psr7Support::split('http_request_multipart');

        Globals::populate(HttpWorker::requestFromProto($context, $body));

        self::assertSame(['title' => 'hi'], $_POST);
        self::assertSame([
            'name' => 'me.txt',
            'full_path' => 'me.txt',
            'type' => 'text/plain',
            'tmp_name' => '/tmp/rr-compat/uploads/upload1000001',
            'error' => 0,
            'size' => 13,
        ], $_FILES['avatar']);
        self::assertSame([
            'name' => ['two.bin', 'evil.php'],
            'full_path' => ['two.bin', 'evil.php'],
            'type' => ['application/octet-stream', 'text/x-php'],
            'tmp_name' => ['/tmp/rr-compat/uploads/upload1000002', ''],
            'error' => [0, 8],
            'size' => [7, 0],
        ], $_FILES['docs']);
        self::assertSame('multipart/form-data; boundary=XyZ', $_SERVER['CONTENT_TYPE']);
        self::assertSame('512', $_SERVER['CONTENT_LENGTH']);
        self::assertSame('POST', $_SERVER['REQUEST_METHOD']);
    }

    public function testEachCallReplacesTheValuesOfTheRequestBefore(): void
    {
        [$context, $body] = Psr7Support::split('http_request_form');
        Globals::populate(HttpWorker::requestFromProto($context, $body));
        self::assertSame('1', $_POST['a']);

        Globals::populate(new Request(method: 'GET', uri: 'https://[::1]:8443/p?q=1', rawQuery: 'q=1', query: ['q' => '1']));

        self::assertSame([], $_POST);
        self::assertSame(['q' => '1'], $_GET);
        self::assertArrayNotHasKey('CONTENT_TYPE', $_SERVER);
        self::assertSame('on', $_SERVER['HTTPS']);
        self::assertSame('[::1]:8443', $_SERVER['HTTP_HOST']);
        self::assertSame('8443', $_SERVER['SERVER_PORT']);
        self::assertSame('/p?q=1', $_SERVER['REQUEST_URI']);
        self::assertSame('', $_SERVER['HTTP_USER_AGENT']);
    }

    public function testRequestOrderDecidesWhichValueWinsInRequest(): void
    {
        $request = new Request(query: ['k' => 'get', 'g' => '1'], parsed: ['k' => 'post'], cookies: ['k' => 'cookie']);

        Globals::populate($request, 'GP');
        self::assertSame(['k' => 'post', 'g' => '1'], $_REQUEST);

        Globals::populate($request, 'PGC');
        self::assertSame(['k' => 'cookie', 'g' => '1'], $_REQUEST);

        Globals::populate($request, 'PG');
        self::assertSame(['k' => 'get', 'g' => '1'], $_REQUEST);
    }

    public function testServerParametersUseTheGivenTimeAndBase(): void
    {
        $server = Globals::server(new Request(remoteAddr: '10.1.1.1', method: 'DELETE', uri: 'http://h/x', headers: ['X-Forwarded-For' => ['a', 'b']]), ['KEEP' => 1, 'HTTP_OLD' => 'x'], 1700000000.25);

        self::assertSame(1, $server['KEEP']);
        self::assertArrayNotHasKey('HTTP_OLD', $server);
        self::assertSame(1700000000, $server['REQUEST_TIME']);
        self::assertSame(1700000000.25, $server['REQUEST_TIME_FLOAT']);
        self::assertSame('a, b', $server['HTTP_X_FORWARDED_FOR']);
        self::assertSame('DELETE', $server['REQUEST_METHOD']);
        self::assertSame('80', $server['SERVER_PORT']);
    }
}
