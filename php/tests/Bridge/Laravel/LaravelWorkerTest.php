<?php

declare(strict_types=1);

namespace Courser\Tests\Bridge\Laravel;

use Courser\Bridge\Laravel\LaravelWorker;
use Courser\Debug\LeakDetector;
use Courser\Frame;
use Courser\Http\HttpWorker;
use Courser\Http\Proto;
use Courser\Relay\StreamRelay;
use Courser\Tests\Http\Psr7Support;
use Courser\Tests\TestSupport;
use Courser\Worker;
use PHPUnit\Framework\TestCase;

require_once __DIR__ . '/../../Http/Psr7Support.php';

/**
 * Drives LaravelWorker over a socket pair with the example app
 * (examples/laravel); the test plays the server and keeps each client's
 * cookies, as a browser would.
 *
 * One application for the whole class: Laravel keeps the application in
 * statics (Container::$instance, Facade::$app), as one worker process does.
 */
final class LaravelWorkerTest extends TestCase
{
    private const EXAMPLE = __DIR__ . '/../../../../examples/laravel';

    /** @var resource */
    private static $server;

    /** @var resource */
    private static $client;

    /** @var resource */
    private static $log;

    private static ?LaravelWorker $worker = null;

    private static string $storage = '';

    public static function setUpBeforeClass(): void
    {
        if (!is_file('/usr/share/php/Illuminate/autoload.php')) {
            return;
        }
        self::$storage = Psr7Support::tempDir();
        putenv('APP_STORAGE=' . self::$storage);
        $app = require self::EXAMPLE . '/bootstrap/app.php';
        putenv('APP_STORAGE');
        HttpWorker::resetCodec();
        [self::$server, self::$client] = TestSupport::socketPair();
        self::$log = fopen('php://memory', 'w+');
        $http = new HttpWorker(new Worker(new StreamRelay(self::$client, self::$client)));
        $leaks = new LeakDetector(LeakDetector::FULL, self::$log);
        $leaks->ignore('PHPUnit\\');   // the test runner's own counters
        self::$worker = new LaravelWorker($app, $http, $leaks);
    }

    public static function tearDownAfterClass(): void
    {
        HttpWorker::resetCodec();
        if (self::$worker !== null) {
            fclose(self::$server);
            fclose(self::$client);
            fclose(self::$log);
            self::$worker = null;
        }
        if (self::$storage !== '') {
            exec('rm -rf ' . escapeshellarg(self::$storage));
        }
    }

    protected function setUp(): void
    {
        if (self::$worker === null) {
            self::markTestSkipped('Laravel is not installed (apt-get install php-laravel-framework)');
        }
    }

    /**
     * Sends one request and returns [status, headers, body].
     *
     * @param array<string, string> $jar the client's cookies, updated from Set-Cookie
     *
     * @return array{0: int, 1: array<string, list<string>>, 2: string}
     */
    private function get(string $path, array &$jar = []): array
    {
        $cookies = [];
        foreach ($jar as $name => $value) {
            $cookies[$name] = [$value];
        }
        $fields = [
            'uri' => 'http://127.0.0.1:8085' . $path,
            'rawQuery' => (string) parse_url($path, PHP_URL_QUERY),
            'headers' => ['Accept' => ['application/json']],
        ];
        if ($cookies !== []) {
            $fields['cookies'] = $cookies;
        }
        fwrite(self::$server, Psr7Support::protoRequest($fields));
        self::assertTrue(self::$worker->serveOne());

        $status = 0;
        $headers = [];
        $content = '';
        do {
            $frame = Frame::fromBytes(TestSupport::readRawFrame(self::$server));
            self::assertSame(0, $frame->flags & Frame::ERROR, 'error frame: ' . $frame->payload);
            $length = $frame->options[0];
            $response = Proto::decodeResponse(substr($frame->payload, 0, $length));
            $status = $response['status'];
            $headers = $response['headers'];
            $content .= substr($frame->payload, $length);
        } while (($frame->byte10 & Frame::STREAM) !== 0);

        foreach ($headers['Set-Cookie'] ?? [] as $line) {
            [$pair] = explode(';', $line, 2);
            [$name, $value] = explode('=', $pair, 2);
            $jar[$name] = urldecode($value);
        }

        return [$status, $headers, $content];
    }

    /**
     * @param array<string, string> $jar
     *
     * @return array<string, mixed>
     */
    private function whoami(array &$jar = []): array
    {
        [$status, , $body] = $this->get('/whoami', $jar);
        self::assertSame(200, $status, $body);

        return json_decode($body, true, 512, JSON_THROW_ON_ERROR);
    }

    public function testTheExampleRoutesAnswer(): void
    {
        [$status, $headers, $body] = $this->get('/');
        self::assertSame(200, $status);
        self::assertSame("Hello from Laravel\n", $body);
        self::assertSame(['text/plain; charset=utf-8'], $headers['Content-Type']);

        [$status, , $body] = $this->get('/hello/Ada');
        self::assertSame([200, "Hello, Ada\n"], [$status, $body]);

        [$status, , $body] = $this->get('/items');
        self::assertSame(200, $status);
        $items = json_decode($body, true);
        self::assertCount(20, $items);
        self::assertSame(['id' => 20, 'name' => 'Item 20'], $items[19]);

        [$status] = $this->get('/missing');
        self::assertSame(404, $status);
        [$status, , $body] = $this->get('/welcome/Bob');
        self::assertSame(200, $status);
        self::assertStringContainsString('Hello, Bob.', $body);
    }

    public function testTwoUsersInARowNeverSeeEachOthersAuthSessionOrCookies(): void
    {
        $alice = [];
        $bob = [];
        [$status] = $this->get('/login/alice?note=for-alice&flavor=vanilla', $alice);
        self::assertSame(200, $status);
        self::assertArrayHasKey('laravel_session', $alice);
        self::assertArrayHasKey('flavor', $alice);
        [$status] = $this->get('/login/bob?note=for-bob&flavor=chocolate', $bob);
        self::assertSame(200, $status);
        self::assertNotSame($alice['laravel_session'], $bob['laravel_session']);

        for ($round = 0; $round < 3; $round++) {
            $anonymous = [];
            self::assertSame(['alice', 'for-alice', 'vanilla'], array_values(array_intersect_key($this->whoami($alice), ['user' => 1, 'note' => 1, 'flavor' => 1])));
            self::assertSame(['bob', 'for-bob', 'chocolate'], array_values(array_intersect_key($this->whoami($bob), ['user' => 1, 'note' => 1, 'flavor' => 1])));
            $nobody = $this->whoami($anonymous);
            self::assertNull($nobody['user']);
            self::assertNull($nobody['note']);
            self::assertNull($nobody['flavor']);
            self::assertArrayNotHasKey('flavor', $anonymous, 'an anonymous client got a cookie queued for another user');
        }

        [$status] = $this->get('/private');
        self::assertSame(401, $status);
        [$status, , $body] = $this->get('/private', $alice);
        self::assertSame([200, '{"user":"alice"}'], [$status, $body]);
        [$status] = $this->get('/private');
        self::assertSame(401, $status, 'a guest was let in after an authenticated request');
    }

    public function testWhatARequestChangesIsUndoneBeforeTheNext(): void
    {
        $before = $this->whoami();
        [$status] = $this->get('/dirty');
        self::assertSame(200, $status);
        $after = $this->whoami();

        self::assertSame('en', $after['locale']);
        self::assertSame($before['app_name'], $after['app_name']);
        self::assertNotSame('changed by /dirty', $after['app_name']);
        self::assertSame($before['shared'], $after['shared']);
        self::assertNotContains('secret', $after['shared']);
        self::assertSame([], $after['queued']);
        self::assertSame('http://127.0.0.1:8085/whoami', $after['url']);
    }

    public function testNoCallbackOrGuardPilesUpAcrossRequests(): void
    {
        $app = self::$worker->getApplication();
        $count = static fn (): int => count((fn (): array => $this->reboundCallbacks['request'] ?? [])->call($app));
        $jar = [];
        $this->get('/login/alice', $jar);
        $this->whoami($jar);
        $start = $count();
        for ($i = 0; $i < 20; $i++) {
            $this->whoami($jar);
        }
        self::assertSame($start, $count(), 'each request added a rebinding callback for "request"');
    }

    public function testTheAppsOwnResetHooksRun(): void
    {
        $app = self::$worker->getApplication();
        $service = new class () {
            public int $resets = 0;

            public function reset(): void
            {
                $this->resets++;
            }
        };
        $app->instance('courser.test.resettable', $service);
        $app->tag(['courser.test.resettable'], 'courser.reset');
        $calls = 0;
        self::$worker->onReset(static function () use (&$calls): void {
            $calls++;
        });

        $this->get('/');
        $this->get('/hello/x');
        self::assertSame(2, $service->resets);
        self::assertSame(2, $calls);
    }

    public function testTheLeakDetectorNamesTheStaticThatGrows(): void
    {
        $this->get('/leak');
        $this->get('/leak');
        $lines = self::$worker->getLeakDetector()->reports();
        $last = (string) end($lines);
        self::assertStringContainsString('GET /leak (request 2 of this route) left state behind', $last);
        self::assertStringContainsString('static App\Support\LeakyCache::$items grew from 1 to 2 entries', $last);

        // The routes that only change per-request state report nothing.
        $reported = count($lines);
        foreach (['/', '/hello/a', '/items', '/whoami', '/dirty', '/hello/b', '/', '/whoami', '/dirty'] as $path) {
            $this->get($path);
        }
        $new = array_slice(self::$worker->getLeakDetector()->reports(), $reported);
        self::assertSame([], $new, 'false leak reports');
    }

    public function testSuperglobalsAreThisRequests(): void
    {
        $jar = ['theme' => 'dark'];
        [$status, , $body] = $this->get('/globals?a=1&b[]=x', $jar);
        self::assertSame(200, $status);
        self::assertSame([
            'get' => ['a' => '1', 'b' => ['x']],
            'cookie' => ['theme' => 'dark'],
            'request' => ['a' => '1', 'b' => ['x']],
            'uri' => '/globals?a=1&b[]=x',
            'method' => 'GET',
        ], json_decode($body, true));

        $none = [];
        [, , $body] = $this->get('/globals', $none);
        self::assertSame(['get' => [], 'cookie' => [], 'request' => [], 'uri' => '/globals', 'method' => 'GET'], json_decode($body, true));
    }
}
